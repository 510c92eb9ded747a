/* C tests: bad arguments, unconfigured backends, NULL handles and pages. */
#include "harness.h"

/* ------------------------------------------------------------------ */
/* Bad arguments                                                       */
/* ------------------------------------------------------------------ */

/* Argument rows shared by write, update, read and delete. Every row that
 * names a valid key names "keep", which must survive all of them. */
static const struct bad_row {
    const char *what, *backend, *bucket, *key;
    tether_status want;
} bad_rows[] = {
    {"NULL key", NULL, NULL, NULL, TETHER_INVALID_ARGUMENT},
    {"empty key", NULL, NULL, "", TETHER_INVALID_ARGUMENT},
    {"empty key in bucket", NULL, "b", "", TETHER_INVALID_ARGUMENT},
    {"bad UTF-8 key", NULL, NULL, "\xff", TETHER_INVALID_ARGUMENT},
    {"bad UTF-8 bucket", NULL, "\xff", "keep", TETHER_INVALID_ARGUMENT},
    {"':' in bucket", NULL, "a:b", "keep", TETHER_INVALID_ARGUMENT},
    {"bucket ':'", NULL, ":", "keep", TETHER_INVALID_ARGUMENT},
    {"bad UTF-8 backend", "\xff", NULL, "keep", TETHER_INVALID_ARGUMENT},
    {"unknown backend", "nope", NULL, "keep", TETHER_UNKNOWN_BACKEND},
};
#define N_BAD_ROWS (sizeof bad_rows / sizeof bad_rows[0])

static void test_bad_arguments_write(struct fixture *fx)
{
    tether_db *db = fx->db;
    const uint8_t *v = (const uint8_t *)"new";
    CHECK_OK(put(db, NULL, "keep", "kept", 0));

    for (size_t i = 0; i < N_BAD_ROWS; i++) {
        const struct bad_row *r = &bad_rows[i];
        g_note = r->what;
        CHECK_STATUS(r->want, T.write(db, r->backend, r->bucket, r->key, v, 3, 0));
        CHECK_STATUS(r->want, T.write(db, r->backend, r->bucket, r->key, v, 3, TETHER_QUEUE));
    }
    g_note = NULL;
    CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.write(db, "nope", NULL, "k", v, 3, 0));
    CHECK(error_mentions("nope"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.write(NULL, NULL, NULL, "keep", v, 3, 0));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.write(NULL, NULL, NULL, "keep", v, 3, TETHER_QUEUE));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.write(db, NULL, NULL, "keep", NULL, 3, 0));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.write(db, NULL, NULL, "keep", NULL, 3, TETHER_QUEUE));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.write(db, NULL, NULL, "keep", v, 3, 0x80));
    CHECK(error_mentions("0x80"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.write(db, NULL, NULL, "keep", v, 3, TETHER_QUEUE | 0x80u));

    /* Nothing was written, queued or not. */
    CHECK_OK(T.flush(db));
    CHECK(has(db, NULL, "keep", "kept"));
    CHECK(absent(db, NULL, NULL, "k"));
    CHECK(absent(db, NULL, "b", "keep"));
}

static void test_bad_arguments_update(struct fixture *fx)
{
    tether_db *db = fx->db;
    const uint8_t *v = (const uint8_t *)"new";
    CHECK_OK(put(db, NULL, "keep", "kept", 0));

    for (size_t i = 0; i < N_BAD_ROWS; i++) {
        const struct bad_row *r = &bad_rows[i];
        g_note = r->what;
        CHECK_STATUS(r->want, T.update(db, r->backend, r->bucket, r->key, v, 3));
    }
    g_note = NULL;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.update(NULL, NULL, NULL, "keep", v, 3));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.update(db, NULL, NULL, "keep", NULL, 3));
    CHECK(has(db, NULL, "keep", "kept"));
}

static void test_bad_arguments_read(struct fixture *fx)
{
    tether_db *db = fx->db;
    uint8_t *value = VALUE_SENTINEL;
    size_t len = LEN_SENTINEL;
    CHECK_OK(put(db, NULL, "keep", "kept", 0));

    for (size_t i = 0; i < N_BAD_ROWS; i++) {
        const struct bad_row *r = &bad_rows[i];
        g_note = r->what;
        CHECK_STATUS(r->want, T.read(db, r->backend, r->bucket, r->key, &value, &len));
        CHECK(value == VALUE_SENTINEL && len == LEN_SENTINEL);
    }
    g_note = NULL;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.read(NULL, NULL, NULL, "keep", &value, &len));
    /* NULL outputs fail the call even when the key exists; the other
     * output is left alone. */
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.read(db, NULL, NULL, "keep", NULL, &len));
    CHECK(error_mentions("out_value"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.read(db, NULL, NULL, "keep", &value, NULL));
    CHECK(error_mentions("out_len"));
    CHECK(value == VALUE_SENTINEL && len == LEN_SENTINEL);
    CHECK(has(db, NULL, "keep", "kept"));
}

static void test_bad_arguments_delete(struct fixture *fx)
{
    tether_db *db = fx->db;
    CHECK_OK(put(db, NULL, "keep", "kept", 0));
    CHECK_OK(put(db, "b", "keep", "kept too", 0));

    for (size_t i = 0; i < N_BAD_ROWS; i++) {
        const struct bad_row *r = &bad_rows[i];
        g_note = r->what;
        CHECK_STATUS(r->want, T.delete(db, r->backend, r->bucket, r->key));
    }
    g_note = NULL;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.delete(NULL, NULL, NULL, "keep"));
    CHECK(has(db, NULL, "keep", "kept"));
    CHECK(has(db, "b", "keep", "kept too"));
}

static void test_bad_arguments_list(struct fixture *fx)
{
    tether_db *db = fx->db;
    tether_page *page = PAGE_SENTINEL;
    CHECK_OK(put(db, "b", "k", "v", 0));

    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(NULL, NULL, "b", NULL, NULL, 10, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(db, NULL, "b", NULL, NULL, 10, NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(db, NULL, "b", NULL, NULL, 0, &page));
    CHECK(error_mentions("page_size"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(db, NULL, "\xff", NULL, NULL, 10, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(db, NULL, "a:b", NULL, NULL, 10, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(db, NULL, "b", "\xff", NULL, 10, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(db, NULL, "b", NULL, "\xff", 10, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list(db, "\xff", "b", NULL, NULL, 10, &page));
    CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.list(db, "nope", "b", NULL, NULL, 10, &page));
    CHECK(error_mentions("nope"));
    CHECK(page == PAGE_SENTINEL);
}

/* Backends this build has but this handle does not configure (docs/configuration.md).
 * A default build has every backend; the Rust tests cover a configured
 * backend a build lacks (cargo test --no-default-features). */
static void test_unconfigured_backends(struct fixture *fx)
{
    CHECK_OK(open_with(fx, DEFAULT_QUEUE, ",\"logging\":\"none\""));
    tether_db *db = fx->db;
    const uint8_t *v = (const uint8_t *)"v";
    uint8_t *value = VALUE_SENTINEL;
    size_t len = LEN_SENTINEL;
    tether_page *page = PAGE_SENTINEL;
    const char *const names[] = {"etcd", "dynamodb"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *be = names[i];
        g_note = be;
        CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.write(db, be, NULL, "k", v, 1, 0));
        CHECK(error_mentions(be));
        CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.write(db, be, NULL, "k", v, 1, TETHER_QUEUE));
        CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.update(db, be, NULL, "k", v, 1));
        CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.read(db, be, NULL, "k", &value, &len));
        CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.delete(db, be, NULL, "k"));
        CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.list(db, be, NULL, NULL, NULL, 10, &page));
    }
    g_note = NULL;
    CHECK(value == VALUE_SENTINEL && len == LEN_SENTINEL && page == PAGE_SENTINEL);

    /* The default backend is still local. */
    CHECK_OK(put(db, NULL, "k", "local", 0));
    CHECK(has_bytes(db, "local", NULL, "k", "local", 5));
    CHECK_OK(T.flush(db));
}

/* Functions that take NULL, and page accessors out of range. */
static void test_null_handles_and_pages(struct fixture *fx)
{
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.start(NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.stop(NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.flush(NULL));
    CHECK_OK(T.close(NULL));
    T.page_free(NULL);
    T.free(NULL, 0);
    T.free(NULL, 16);

    size_t len = LEN_SENTINEL;
    CHECK(T.page_len(NULL) == 0);
    CHECK(T.page_key(NULL, 0) == NULL);
    CHECK(T.page_value(NULL, 0, &len) == NULL);
    CHECK(len == LEN_SENTINEL);
    CHECK(T.page_next(NULL) == NULL);

    tether_db *db = fx->db;
    CHECK_OK(put(db, "p", "a", "1", 0));
    CHECK_OK(T.write(db, NULL, "p", "b", NULL, 0, 0));
    tether_page *page = NULL;
    CHECK_OK(T.list(db, NULL, "p", NULL, NULL, 10, &page));
    CHECK(page != NULL);
    CHECK(T.page_len(page) == 2);
    CHECK(strcmp(T.page_key(page, 0), "a") == 0);
    CHECK(strcmp(T.page_key(page, 1), "b") == 0);
    const uint8_t *v = T.page_value(page, 0, &len);
    CHECK(v != NULL && len == 1 && v[0] == '1');
    len = LEN_SENTINEL;
    CHECK(T.page_value(page, 1, &len) != NULL); /* empty, but not NULL */
    CHECK(len == 0);
    CHECK(T.page_value(page, 0, NULL) != NULL); /* out_len may be NULL */
    len = LEN_SENTINEL;
    CHECK(T.page_key(page, 2) == NULL);
    CHECK(T.page_key(page, SIZE_MAX) == NULL);
    CHECK(T.page_value(page, 2, &len) == NULL);
    CHECK(T.page_value(page, SIZE_MAX, NULL) == NULL);
    CHECK(len == LEN_SENTINEL);
    CHECK(T.page_next(page) == NULL);
    T.page_free(page);
}

const struct test_case suite_bad_arguments[] = {
    {"bad_arguments_write", test_bad_arguments_write, true},
    {"bad_arguments_update", test_bad_arguments_update, true},
    {"bad_arguments_read", test_bad_arguments_read, true},
    {"bad_arguments_delete", test_bad_arguments_delete, true},
    {"bad_arguments_list", test_bad_arguments_list, true},
    {"unconfigured_backends", test_unconfigured_backends, false},
    {"null_handles_and_pages", test_null_handles_and_pages, true},
    END_OF_SUITE,
};
