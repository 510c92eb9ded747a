/* C tests: listing keys alone (tether_list_ex with TETHER_KEYS_ONLY) and
 * deleting by prefix (tether_delete_prefix), on the default `local`
 * backend. */
#include "harness.h"

/* Whether one keys-only page holds exactly `want` (NULL-terminated), in
 * that order, each with a NULL value of length 0, and its next key is
 * `want_next` (NULL: no next). */
static bool key_page_is(tether_db *db, const char *bucket, const char *prefix,
                        const char *start_after, size_t page_size, const char *const *want,
                        const char *want_next)
{
    tether_page *page = NULL;
    if (T.list_ex(db, NULL, bucket, prefix, start_after, page_size, TETHER_KEYS_ONLY, &page) !=
        TETHER_OK)
        return false;
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    bool same = T.page_len(page) == n;
    for (size_t i = 0; same && i < n; i++) {
        size_t len = LEN_SENTINEL;
        same = T.page_key(page, i) != NULL && strcmp(T.page_key(page, i), want[i]) == 0 &&
               T.page_value(page, i, &len) == NULL && len == 0 &&
               T.page_value(page, i, NULL) == NULL;
    }
    const char *next = T.page_next(page);
    same = same && (want_next == NULL ? next == NULL : next != NULL && !strcmp(next, want_next));
    if (!same) {
        printf("    keys-only listing bucket=%s prefix=%s start_after=%s gave:",
               bucket ? bucket : "NULL", prefix ? prefix : "NULL",
               start_after ? start_after : "NULL");
        for (size_t i = 0; i < T.page_len(page); i++)
            printf(" %s", T.page_key(page, i));
        printf(" (next %s)\n", next ? next : "NULL");
    }
    T.page_free(page);
    return same;
}

static void test_keys_only_pages(struct fixture *fx)
{
    tether_db *db = fx->db;
    char key[16];
    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK_OK(put(db, "b", key, "a value the page leaves out", 0));
    }
    CHECK_OK(put(db, "bX", "k0", "x", 0));
    CHECK_OK(put(db, NULL, "b", "x", 0));

    CHECK(key_page_is(db, "b", NULL, NULL, 2, KEYS("k0", "k1"), "k1"));
    CHECK(key_page_is(db, "b", NULL, "k1", 2, KEYS("k2", "k3"), "k3"));
    CHECK(key_page_is(db, "b", NULL, "k3", 2, KEYS("k4"), NULL));
    CHECK(key_page_is(db, "b", "k3", NULL, 10, KEYS("k3"), NULL));
    CHECK(key_page_is(db, "bX", NULL, NULL, 10, KEYS("k0"), NULL));
    CHECK(key_page_is(db, "none", NULL, NULL, 10, NO_KEYS, NULL));

    /* Past the page's end, NULL with the length left alone. */
    tether_page *page = NULL;
    CHECK_OK(T.list_ex(db, NULL, "b", NULL, NULL, 10, TETHER_KEYS_ONLY, &page));
    size_t len = LEN_SENTINEL;
    bool past_end = T.page_len(page) == 5 && T.page_key(page, 5) == NULL &&
                    T.page_value(page, 5, &len) == NULL && len == LEN_SENTINEL;
    T.page_free(page);
    CHECK(past_end);

    /* Flags 0: keys and values, as tether_list gives them. */
    page = NULL;
    CHECK_OK(T.list_ex(db, NULL, "b", "k4", NULL, 10, 0, &page));
    const uint8_t *value = T.page_value(page, 0, &len);
    bool full = T.page_len(page) == 1 && value != NULL && len == 27 &&
                memcmp(value, "a value the page leaves out", len) == 0;
    T.page_free(page);
    CHECK(full);
}

static void test_list_ex_bad_arguments(struct fixture *fx)
{
    tether_db *db = fx->db;
    CHECK_OK(put(db, "b", "k", "v", 0));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.list_ex(db, NULL, "b", NULL, NULL, 10, TETHER_KEYS_ONLY, NULL));
    tether_page *page = PAGE_SENTINEL;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.list_ex(db, NULL, "b", NULL, NULL, 10, 2, &page));
    CHECK(error_mentions("tether_list_ex") && error_mentions("unknown flags"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.list_ex(db, NULL, "b", NULL, NULL, 10, TETHER_KEYS_ONLY | 0x100, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.list_ex(db, NULL, "b", NULL, NULL, 0, TETHER_KEYS_ONLY, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.list_ex(NULL, NULL, "b", NULL, NULL, 10, TETHER_KEYS_ONLY, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.list_ex(db, NULL, "a:b", NULL, NULL, 10, TETHER_KEYS_ONLY, &page));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.list_ex(db, NULL, "b", "\xff", NULL, 10, TETHER_KEYS_ONLY, &page));
    CHECK_STATUS(TETHER_UNKNOWN_BACKEND,
                 T.list_ex(db, "nope", "b", NULL, NULL, 10, TETHER_KEYS_ONLY, &page));
    CHECK(page == PAGE_SENTINEL);
}

static void test_delete_prefix(struct fixture *fx)
{
    tether_db *db = fx->db;
    const char *logs[] = {"a", "b", "pre", "prefixed-1", "prefixed-2"};
    for (size_t i = 0; i < sizeof logs / sizeof logs[0]; i++)
        CHECK_OK(put(db, "logs", logs[i], "v", 0));
    CHECK_OK(put(db, "logsX", "prefixed-1", "v", 0));
    CHECK_OK(put(db, NULL, "logs", "v", 0));
    CHECK_OK(put(db, NULL, "other", "v", 0));

    uint64_t deleted = 99;
    CHECK_OK(T.delete_prefix(db, NULL, "logs", "prefixed", &deleted));
    CHECK(deleted == 2);
    CHECK(absent(db, NULL, "logs", "prefixed-1"));
    CHECK(has(db, "logs", "pre", "v"));
    CHECK(has(db, "logsX", "prefixed-1", "v"));
    /* Nothing left there: OK, with a count of 0. */
    CHECK_OK(T.delete_prefix(db, NULL, "logs", "prefixed", &deleted));
    CHECK(deleted == 0);
    /* The whole bucket, with a NULL out_deleted. */
    CHECK_OK(T.delete_prefix(db, NULL, "logs", NULL, NULL));
    CHECK(page_is(db, "logs", NULL, NULL, 10, NO_KEYS, NULL));
    CHECK(has(db, "logsX", "prefixed-1", "v"));
    /* Without a bucket: stored keys, `logs` and bucket logsX's. */
    CHECK_OK(T.delete_prefix(db, "", "", "logs", &deleted));
    CHECK(deleted == 2);
    CHECK(page_is(db, NULL, NULL, NULL, 10, KEYS("other"), NULL));
}

static void test_delete_prefix_refusals(struct fixture *fx)
{
    tether_db *db = fx->db;
    CHECK_OK(put(db, NULL, "kept", "v", 0));
    CHECK_OK(put(db, "b", "kept", "v", 0));
    /* No bucket and no prefix: every key of the backend. */
    const char *none[][2] = {{NULL, NULL}, {"", NULL}, {NULL, ""}, {"", ""}};
    for (size_t i = 0; i < 4; i++) {
        uint64_t deleted = 99;
        g_note = "no bucket and no prefix";
        CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                     T.delete_prefix(db, NULL, none[i][0], none[i][1], &deleted));
        CHECK(deleted == 99);
        CHECK(error_mentions("tether_delete_prefix") &&
              error_mentions("neither a bucket nor a prefix"));
    }
    g_note = NULL;
    uint64_t deleted = 99;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.delete_prefix(NULL, NULL, "b", NULL, &deleted));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.delete_prefix(db, NULL, "a:b", NULL, &deleted));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.delete_prefix(db, NULL, "b", "\xff", &deleted));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.delete_prefix(db, "\xff", "b", NULL, &deleted));
    CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.delete_prefix(db, "nope", "b", NULL, &deleted));
    CHECK(deleted == 99);
    CHECK(has(db, NULL, "kept", "v"));
    CHECK(has(db, "b", "kept", "v"));
}

const struct test_case suite_keys[] = {
    {"keys_only_pages", test_keys_only_pages, true},
    {"list_ex_bad_arguments", test_list_ex_bad_arguments, true},
    {"delete_prefix", test_delete_prefix, true},
    {"delete_prefix_refusals", test_delete_prefix_refusals, true},
    END_OF_SUITE,
};
