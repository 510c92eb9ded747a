/* C tests: moving data between two backends of a handle (tether_copy). */
#include "harness.h"

/* Opens fx->db over two local stores, "one" (the default) and "two". */
static tether_status open_two(struct fixture *fx)
{
    snprintf(fx->config, sizeof fx->config,
             "{\"default_backend\":\"one\",\"queue_batch\":{\"durable\":false},"
             "\"backends\":{\"one\":{\"engine\":\"local\",\"filepath\":\"%s/one\"},"
             "\"two\":{\"engine\":\"local\",\"filepath\":\"%s/two\"}}}",
             fx->dir, fx->dir);
    return T.open(fx->config, &fx->db);
}

/* Copies with `flags` and checks the report is exactly `want`. */
static bool copy_reports(tether_db *db, const char *prefix, uint32_t flags, const char *want)
{
    char *report = STRING_SENTINEL;
    tether_status status = T.copy(db, "one", "two", "b", prefix, flags, &report);
    if (status != TETHER_OK) {
        printf("    tether_copy: %s: %s\n", T.status_name(status), T.last_error());
        return false;
    }
    bool same = strcmp(report, want) == 0;
    if (!same)
        printf("    report %s, want %s\n", report, want);
    T.free_string(report);
    return same;
}

static void test_copy(struct fixture *fx)
{
    CHECK_OK(open_two(fx));
    tether_db *db = fx->db;
    CHECK_OK(put(db, "b", "a", "1", 0));
    CHECK_OK(put(db, "b", "b", "2", 0));
    CHECK_OK(put(db, "other", "a", "elsewhere", 0));

    /* A dry run reports and writes nothing. */
    CHECK(copy_reports(db, NULL, TETHER_COPY_DRY_RUN,
                       "{\"copied\":2,\"deleted\":0,\"unchanged\":0,\"keys\":[\"a\",\"b\"]}"));
    CHECK(!has_bytes(db, "two", "b", "a", "1", 1));
    /* A prefix narrows it. */
    CHECK(copy_reports(db, "a", 0, "{\"copied\":1,\"deleted\":0,\"unchanged\":0,\"keys\":[\"a\"]}"));
    CHECK(has_bytes(db, "two", "b", "a", "1", 1));
    /* Changed: only what differs; mirror: what the source lacks goes. */
    CHECK_OK(T.write(db, "two", "b", "gone", (const uint8_t *)"x", 1, 0));
    CHECK(copy_reports(db, NULL, TETHER_COPY_CHANGED | TETHER_COPY_MIRROR,
                       "{\"copied\":1,\"deleted\":1,\"unchanged\":1,\"keys\":[\"b\",\"gone\"]}"));
    CHECK(has_bytes(db, "two", "b", "b", "2", 1));
    CHECK(!has_bytes(db, "two", "other", "a", "elsewhere", 9));
}

static void test_copy_bad_arguments(struct fixture *fx)
{
    CHECK_OK(open_two(fx));
    tether_db *db = fx->db;
    char *report = STRING_SENTINEL;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(NULL, "one", "two", NULL, NULL, 0, &report));
    CHECK(error_mentions("tether_copy"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, NULL, "two", NULL, NULL, 0, &report));
    CHECK(error_mentions("from_backend"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, "one", NULL, NULL, NULL, 0, &report));
    CHECK(error_mentions("to_backend"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, "one", "two", NULL, NULL, 0, NULL));
    CHECK(error_mentions("out_report_json"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, "", "two", NULL, NULL, 0, &report));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, "one", "one", NULL, NULL, 0, &report));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, "one", "two", "a:b", NULL, 0, &report));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, "\xff", "two", NULL, NULL, 0, &report));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.copy(db, "one", "two", NULL, NULL, 8, &report));
    CHECK(error_mentions("flags"));
    CHECK_STATUS(TETHER_UNKNOWN_BACKEND, T.copy(db, "one", "three", NULL, NULL, 0, &report));
    CHECK(report == STRING_SENTINEL);
}

const struct test_case suite_copy[] = {
    {"copy", test_copy, false},
    {"copy_bad_arguments", test_copy_bad_arguments, false},
    END_OF_SUITE,
};
