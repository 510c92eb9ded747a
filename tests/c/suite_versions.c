/* C tests: versions and conditions (tether_write_ex, tether_read_ex,
 * tether_delete_ex), on the default `local` backend. */
#include "harness.h"

static tether_status put_ex(tether_db *db, const char *key, const char *value,
                            uint32_t flags, uint64_t version, uint64_t *out_version)
{
    return T.write_ex(db, NULL, "v", key, (const uint8_t *)value, strlen(value), flags, 0,
                      version, out_version);
}

static void test_versions_grow(struct fixture *fx)
{
    tether_db *db = fx->db;
    uint64_t v1 = 0, v2 = 0, v3 = 0, got = 0;
    CHECK_OK(put_ex(db, "k", "one", 0, 0, &v1));
    CHECK(v1 != 0);
    CHECK_OK(put_ex(db, "k", "two", 0, 0, &v2));
    CHECK(v2 > v1);

    /* The existence check: both value outputs NULL, the version given. */
    CHECK_OK(T.read_ex(db, NULL, "v", "k", NULL, NULL, &got));
    CHECK(got == v2);
    uint8_t *value = NULL;
    size_t len = 0;
    got = 0;
    CHECK_OK(T.read_ex(db, NULL, "v", "k", &value, &len, &got));
    CHECK(len == 3 && memcmp(value, "two", 3) == 0);
    CHECK(got == v2);
    T.free(value, len);

    /* Across a delete, the version still grows. */
    CHECK_OK(T.delete_ex(db, NULL, "v", "k", 0, 0));
    CHECK_STATUS(TETHER_NOT_FOUND, T.read_ex(db, NULL, "v", "k", NULL, NULL, NULL));
    CHECK_OK(put_ex(db, "k", "three", TETHER_IF_ABSENT, 0, &v3));
    CHECK(v3 > v2);
}

static void test_conditions(struct fixture *fx)
{
    tether_db *db = fx->db;
    uint64_t v1 = 0, v2 = 0, untouched = 42;
    CHECK_STATUS(TETHER_NOT_FOUND, put_ex(db, "k", "x", TETHER_IF_VERSION, 1, NULL));
    CHECK_OK(put_ex(db, "k", "one", TETHER_IF_ABSENT, 0, &v1));
    CHECK_STATUS(TETHER_CONFLICT, put_ex(db, "k", "x", TETHER_IF_ABSENT, 0, &untouched));
    CHECK(untouched == 42);
    CHECK(error_mentions("tether_write_ex"));
    CHECK_STATUS(TETHER_CONFLICT, put_ex(db, "k", "x", TETHER_IF_VERSION, v1 + 1, NULL));
    CHECK(has(db, "v", "k", "one"));
    CHECK_OK(put_ex(db, "k", "two", TETHER_IF_VERSION, v1, &v2));
    CHECK(v2 > v1);
    CHECK_STATUS(TETHER_CONFLICT, T.delete_ex(db, NULL, "v", "k", TETHER_IF_VERSION, v1));
    CHECK(has(db, "v", "k", "two"));
    CHECK_OK(T.delete_ex(db, NULL, "v", "k", TETHER_IF_VERSION, v2));
    CHECK_STATUS(TETHER_NOT_FOUND, T.delete_ex(db, NULL, "v", "k", TETHER_IF_VERSION, v2));
}

static void test_bad_flags(struct fixture *fx)
{
    tether_db *db = fx->db;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 put_ex(db, "k", "x", TETHER_IF_ABSENT | TETHER_IF_VERSION, 1, NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 put_ex(db, "k", "x", TETHER_QUEUE | TETHER_IF_VERSION, 1, NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, put_ex(db, "k", "x", TETHER_SLIDING, 0, NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.delete_ex(db, NULL, "v", "k", TETHER_QUEUE, 0));
    uint8_t *value = NULL;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.read_ex(db, NULL, "v", "k", &value, NULL, NULL));
    CHECK(value == NULL);
    CHECK(absent(db, NULL, "v", "k"));
}

const struct test_case suite_versions[] = {
    {"versions_grow", test_versions_grow, true},
    {"conditions", test_conditions, true},
    {"bad_flags", test_bad_flags, true},
    END_OF_SUITE,
};
