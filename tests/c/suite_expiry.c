/* C tests: expiry (tether_write_ex's ttl_ms and TETHER_SLIDING,
 * tether_touch), on the default `local` backend. Ttls are hundreds of ms;
 * the cases poll, with a bound, for what must come. */
#include "harness.h"

#include <time.h>

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static tether_status put_ttl(tether_db *db, const char *key, uint32_t flags, uint64_t ttl_ms,
                             uint64_t *out_version)
{
    return T.write_ex(db, NULL, "e", key, (const uint8_t *)"v", 1, flags, ttl_ms, 0,
                      out_version);
}

/* Polls until `key` reads as absent, for at most a minute: a bound that
 * keeps a broken build from hanging, not a timing assertion. */
static bool expires(tether_db *db, const char *key)
{
    for (int i = 0; i < 6000; i++) {
        tether_status status = T.read_ex(db, NULL, "e", key, NULL, NULL, NULL);
        if (status == TETHER_NOT_FOUND)
            return true;
        if (status != TETHER_OK)
            return false;
        sleep_ms(10);
    }
    return false;
}

static void test_a_ttl_expires_the_key(struct fixture *fx)
{
    tether_db *db = fx->db;
    uint64_t start = now_ms(), version = 0;
    CHECK_OK(put_ttl(db, "k", 0, 200, &version));
    CHECK(version != 0);
    CHECK(expires(db, "k"));
    CHECK(now_ms() - start >= 200);
    CHECK_STATUS(TETHER_NOT_FOUND, T.touch(db, NULL, "e", "k", 1000));
    /* Absent: a create-only write takes its place. */
    CHECK_OK(put_ttl(db, "k", TETHER_IF_ABSENT, 0, NULL));
    CHECK(has(db, "e", "k", "v"));
}

static void test_touch_sets_and_clears(struct fixture *fx)
{
    tether_db *db = fx->db;
    CHECK_OK(put_ttl(db, "k", 0, 0, NULL));
    uint64_t start = now_ms();
    CHECK_OK(T.touch(db, NULL, "e", "k", 200));
    CHECK(expires(db, "k"));
    CHECK(now_ms() - start >= 200);

    start = now_ms();
    CHECK_OK(put_ttl(db, "k", TETHER_SLIDING, 60000, NULL));
    CHECK_OK(T.touch(db, NULL, "e", "k", 200));
    CHECK_OK(T.touch(db, NULL, "e", "k", 0));
    while (now_ms() - start < 300)
        sleep_ms(10);
    CHECK(has(db, "e", "k", "v"));
}

static void test_queued_writes_keep_their_ttl(struct fixture *fx)
{
    tether_db *db = fx->db;
    uint64_t version = 42;
    CHECK_OK(put_ttl(db, "q", TETHER_QUEUE, 60000, &version));
    CHECK(version == 42); /* a queued write gives no version */
    CHECK_OK(T.flush(db));
    CHECK(has(db, "e", "q", "v"));
}

static void test_bad_ttls(struct fixture *fx)
{
    tether_db *db = fx->db;
    uint64_t version = 42;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, put_ttl(db, "k", 0, UINT64_MAX, &version));
    CHECK(error_mentions("ttl_ms"));
    CHECK(version == 42);
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, put_ttl(db, "k", TETHER_SLIDING, 0, NULL));
    CHECK_OK(put_ttl(db, "k", 0, 0, NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.touch(db, NULL, "e", "k", UINT64_MAX));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.touch(db, NULL, "e", NULL, 1));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.touch(db, NULL, "e", "", 1));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.touch(NULL, NULL, "e", "k", 1));
    CHECK(error_mentions("tether_touch"));
    CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.touch(db, "nope", "e", "k", 1));
    CHECK(has(db, "e", "k", "v"));
}

const struct test_case suite_expiry[] = {
    {"a_ttl_expires_the_key", test_a_ttl_expires_the_key, true},
    {"touch_sets_and_clears", test_touch_sets_and_clears, true},
    {"queued_writes_keep_their_ttl", test_queued_writes_keep_their_ttl, true},
    {"bad_ttls", test_bad_ttls, true},
    END_OF_SUITE,
};
