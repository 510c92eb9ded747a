/* C tests: listing (tether_list) and its pages. */
#include "harness.h"

/* ------------------------------------------------------------------ */
/* Listing                                                             */
/* ------------------------------------------------------------------ */

static void test_list_pages(struct fixture *fx)
{
    tether_db *db = fx->db;
    char key[16], value[16];
    for (int i = 22; i >= 0; i--) { /* written out of order */
        snprintf(key, sizeof key, "k%02d", i);
        snprintf(value, sizeof value, "v%02d", i);
        CHECK_OK(put(db, "b", key, value, 0));
    }
    /* Neighbours that must not show up. */
    CHECK_OK(put(db, "a", "k99", "x", 0));
    CHECK_OK(put(db, "c", "k00", "x", 0));
    CHECK_OK(put(db, NULL, "b", "x", 0));
    CHECK_OK(put(db, NULL, "bk", "x", 0));

    static const size_t sizes[] = {7, 7, 7, 2};
    char after[64] = "";
    int seen = 0;
    for (int p = 0; p < 4; p++) {
        tether_page *page = NULL;
        CHECK_OK(T.list(db, NULL, "b", NULL, p == 0 ? NULL : after, 7, &page));
        CHECK(T.page_len(page) == sizes[p]);
        for (size_t i = 0; i < sizes[p]; i++, seen++) {
            size_t len = 0;
            snprintf(key, sizeof key, "k%02d", seen);
            snprintf(value, sizeof value, "v%02d", seen);
            const uint8_t *v = T.page_value(page, i, &len);
            CHECK(strcmp(T.page_key(page, i), key) == 0);
            CHECK(v != NULL && len == 3 && memcmp(v, value, 3) == 0);
        }
        const char *next = T.page_next(page);
        if (p < 3) {
            CHECK(next != NULL && strcmp(next, key) == 0);
            snprintf(after, sizeof after, "%s", next); /* next dies with the page */
        } else {
            CHECK(next == NULL);
        }
        T.page_free(page);
    }
    CHECK(seen == 23);

    /* A key count that is a multiple of the page size: the second page is
     * the last, so it has no next. */
    for (int i = 0; i < 14; i++) {
        snprintf(key, sizeof key, "m%02d", i);
        CHECK_OK(put(db, "even", key, "x", 0));
    }
    CHECK(page_is(db, "even", NULL, NULL, 7,
                  KEYS("m00", "m01", "m02", "m03", "m04", "m05", "m06"), "m06"));
    CHECK(page_is(db, "even", NULL, "m06", 7,
                  KEYS("m07", "m08", "m09", "m10", "m11", "m12", "m13"), NULL));

    /* An empty bucket; page_size 1. */
    CHECK(page_is(db, "empty", NULL, NULL, 5, NO_KEYS, NULL));
    CHECK(page_is(db, "b", NULL, NULL, 1, KEYS("k00"), "k00"));
    CHECK(page_is(db, "b", NULL, "k21", 1, KEYS("k22"), NULL));
    CHECK(page_is(db, "even", "m1", NULL, SIZE_MAX, KEYS("m10", "m11", "m12", "m13"), NULL));
}

static void test_list_bucket_isolation(struct fixture *fx)
{
    tether_db *db = fx->db;
    CHECK_OK(put(db, "logs", "k1", "1", 0));
    CHECK_OK(put(db, "logs", "k2", "2", 0));
    CHECK_OK(put(db, "logsX", "k3", "3", 0));
    CHECK_OK(put(db, NULL, "logs", "4", 0));
    CHECK_OK(put(db, NULL, "logsA", "5", 0));

    CHECK(page_is(db, "logs", NULL, NULL, 100, KEYS("k1", "k2"), NULL));
    CHECK(page_is(db, "logsX", NULL, NULL, 100, KEYS("k3"), NULL));
    CHECK(page_is(db, "log", NULL, NULL, 100, NO_KEYS, NULL));

    /* Without a bucket (NULL or ""), keys are listed as stored, in byte order. */
    CHECK(page_is(db, NULL, NULL, NULL, 100,
                  KEYS("logs", "logs:k1", "logs:k2", "logsA", "logsX:k3"), NULL));
    CHECK(page_is(db, "", NULL, NULL, 100,
                  KEYS("logs", "logs:k1", "logs:k2", "logsA", "logsX:k3"), NULL));
    CHECK(page_is(db, NULL, "logs:", NULL, 100, KEYS("logs:k1", "logs:k2"), NULL));
    CHECK(page_is(db, NULL, NULL, NULL, 2, KEYS("logs", "logs:k1"), "logs:k1"));
    CHECK(page_is(db, NULL, NULL, "logs:k1", 2, KEYS("logs:k2", "logsA"), "logsA"));
    CHECK(page_is(db, NULL, NULL, "logsA", 2, KEYS("logsX:k3"), NULL));
}

static void test_list_prefix_and_start_after(struct fixture *fx)
{
    tether_db *db = fx->db;
    const char *const keys[] = {"banana", "app", "cherry", "apricot", "apple"};
    for (size_t i = 0; i < 5; i++)
        CHECK_OK(put(db, "p", keys[i], keys[i], 0));
    CHECK_OK(put(db, "pp", "apex", "x", 0)); /* another bucket */

    CHECK(page_is(db, "p", NULL, NULL, 10,
                  KEYS("app", "apple", "apricot", "banana", "cherry"), NULL));
    CHECK(page_is(db, "p", "", NULL, 10,
                  KEYS("app", "apple", "apricot", "banana", "cherry"), NULL));
    CHECK(page_is(db, "p", "ap", NULL, 10, KEYS("app", "apple", "apricot"), NULL));
    CHECK(page_is(db, "p", "app", NULL, 10, KEYS("app", "apple"), NULL));
    CHECK(page_is(db, "p", "zzz", NULL, 10, NO_KEYS, NULL));

    /* Prefix and pages together. */
    CHECK(page_is(db, "p", "ap", NULL, 2, KEYS("app", "apple"), "apple"));
    CHECK(page_is(db, "p", "ap", "apple", 2, KEYS("apricot"), NULL));

    /* start_after need not be a stored key, and may lie outside the prefix. */
    CHECK(page_is(db, "p", NULL, "apple", 10, KEYS("apricot", "banana", "cherry"), NULL));
    CHECK(page_is(db, "p", NULL, "b", 10, KEYS("banana", "cherry"), NULL));
    CHECK(page_is(db, "p", "b", "a", 10, KEYS("banana"), NULL));
    CHECK(page_is(db, "p", "a", "b", 10, NO_KEYS, NULL));
    CHECK(page_is(db, "p", NULL, "cherry", 10, NO_KEYS, NULL));

    /* Values come with their keys. */
    tether_page *page = NULL;
    CHECK_OK(T.list(db, NULL, "p", "ban", NULL, 10, &page));
    size_t len = 0;
    const uint8_t *v = T.page_value(page, 0, &len);
    bool ok = T.page_len(page) == 1 && v != NULL && len == 6 && memcmp(v, "banana", 6) == 0;
    T.page_free(page);
    CHECK(ok);
}

const struct test_case suite_list[] = {
    {"list_pages", test_list_pages, true},
    {"list_bucket_isolation", test_list_bucket_isolation, true},
    {"list_prefix_and_start_after", test_list_prefix_and_start_after, true},
    END_OF_SUITE,
};
