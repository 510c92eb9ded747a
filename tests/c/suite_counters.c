/* C tests: counters (tether_increment, tether_counter_total), on the
 * default `local` backend. */
#include "harness.h"

#include <pthread.h>

static tether_status incr(tether_db *db, const char *key, int64_t delta, uint32_t shards,
                          int64_t *out_value)
{
    return T.increment(db, NULL, "c", key, delta, shards, out_value);
}

static void test_increment_and_total(struct fixture *fx)
{
    tether_db *db = fx->db;
    int64_t value = 0, total = -1;
    /* An absent counter is 0, and reading it writes nothing. */
    CHECK_OK(T.counter_total(db, NULL, "c", "n", 0, &total));
    CHECK(total == 0);
    CHECK(absent(db, NULL, "c", "n"));

    /* out_value may be NULL. */
    CHECK_OK(incr(db, "n", 40, 0, NULL));
    CHECK_OK(incr(db, "n", 2, 0, &value));
    CHECK(value == 42);
    /* Stored as decimal text: a plain read sees "42". */
    CHECK(has(db, "c", "n", "42"));
    CHECK_OK(incr(db, "n", -50, 1, &value));
    CHECK(value == -8);
    CHECK(has(db, "c", "n", "-8"));
    CHECK_OK(T.counter_total(db, NULL, "c", "n", 1, &total));
    CHECK(total == -8);

    /* Text another writer stored counts on; the sum is written plainly. */
    CHECK_OK(put(db, "c", "m", "007", 0));
    CHECK_OK(incr(db, "m", 1, 0, &value));
    CHECK(value == 8);
    CHECK(has(db, "c", "m", "8"));
}

static void test_conflicts_change_nothing(struct fixture *fx)
{
    tether_db *db = fx->db;
    int64_t value = 7;
    CHECK_OK(put(db, "c", "text", "abc", 0));
    CHECK_STATUS(TETHER_CONFLICT, incr(db, "text", 1, 0, &value));
    CHECK(error_mentions("tether_increment"));
    CHECK(error_mentions("is not a decimal 64-bit integer"));
    CHECK(value == 7);
    CHECK(has(db, "c", "text", "abc"));
    CHECK_STATUS(TETHER_CONFLICT, T.counter_total(db, NULL, "c", "text", 0, &value));
    CHECK(value == 7);

    /* Beyond 64 bits, either way. */
    CHECK_OK(put(db, "c", "max", "9223372036854775807", 0));
    CHECK_STATUS(TETHER_CONFLICT, incr(db, "max", 1, 0, &value));
    CHECK(error_mentions("beyond a 64-bit integer"));
    CHECK(has(db, "c", "max", "9223372036854775807"));
    CHECK_OK(incr(db, "min", INT64_MIN, 0, &value));
    CHECK(value == INT64_MIN);
    CHECK_STATUS(TETHER_CONFLICT, incr(db, "min", -1, 0, &value));
    CHECK(value == INT64_MIN);
    CHECK(has(db, "c", "min", "-9223372036854775808"));
}

static void test_shards(struct fixture *fx)
{
    tether_db *db = fx->db;
    int64_t value = 0, total = 0;
    for (int i = 1; i <= 30; i++) {
        CHECK_OK(incr(db, "hits", 1, 4, &value));
        CHECK(value == i);
    }
    CHECK_OK(incr(db, "hits", 1, 4, NULL));
    CHECK_OK(T.counter_total(db, NULL, "c", "hits", 4, &total));
    CHECK(total == 31);
    /* The key itself is not written; the shards are hits#shard0..3. */
    CHECK(absent(db, NULL, "c", "hits"));
    int64_t sum = 0;
    for (int i = 0; i < 4; i++) {
        char shard[32];
        snprintf(shard, sizeof shard, "hits#shard%d", i);
        int64_t one = 0;
        CHECK_OK(T.counter_total(db, NULL, "c", shard, 0, &one));
        sum += one;
    }
    CHECK(sum == 31);
    /* More shards later still count the earlier ones. */
    CHECK_OK(T.counter_total(db, NULL, "c", "hits", 16, &total));
    CHECK(total == 31);
    CHECK_OK(incr(db, "bound", 1, TETHER_MAX_SHARDS, NULL));
}

static void test_bad_arguments(struct fixture *fx)
{
    tether_db *db = fx->db;
    int64_t value = 7;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.increment(NULL, NULL, "c", "k", 1, 0, &value));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.increment(db, NULL, "c", NULL, 1, 0, &value));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.increment(db, NULL, "c", "", 1, 0, &value));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.increment(db, NULL, "a:b", "k", 1, 0, &value));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 incr(db, "k", 1, TETHER_MAX_SHARDS + 1, &value));
    CHECK(error_mentions("shards is 1025"));
    CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.increment(db, "nope", "c", "k", 1, 0, &value));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.counter_total(NULL, NULL, "c", "k", 0, &value));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.counter_total(db, NULL, "c", "k", 0, NULL));
    CHECK(error_mentions("out_value is NULL"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT,
                 T.counter_total(db, NULL, "c", "k", UINT32_MAX, &value));
    CHECK(value == 7);
    CHECK(absent(db, NULL, "c", "k"));
}

/* Eight threads increment one counter through one handle: each counts. */
enum { RACERS = 8, RACE_ROUNDS = 200 };

static void *race(void *arg)
{
    tether_db *db = arg;
    for (int i = 0; i < RACE_ROUNDS; i++)
        if (T.increment(db, NULL, "c", "raced", 1, 0, NULL) != TETHER_OK)
            return (void *)1;
    return NULL;
}

static void test_threads_count_every_increment(struct fixture *fx)
{
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++)
        CHECK(pthread_create(&threads[i], NULL, race, fx->db) == 0);
    int failed = 0;
    for (int i = 0; i < RACERS; i++) {
        void *result = NULL;
        pthread_join(threads[i], &result);
        failed += result != NULL;
    }
    CHECK(failed == 0);
    int64_t total = 0;
    CHECK_OK(T.counter_total(fx->db, NULL, "c", "raced", 0, &total));
    CHECK(total == RACERS * RACE_ROUNDS);
}

const struct test_case suite_counters[] = {
    {"increment_and_total", test_increment_and_total, true},
    {"conflicts_change_nothing", test_conflicts_change_nothing, true},
    {"shards", test_shards, true},
    {"bad_arguments", test_bad_arguments, true},
    {"threads_count_every_increment", test_threads_count_every_increment, true},
    END_OF_SUITE,
};
