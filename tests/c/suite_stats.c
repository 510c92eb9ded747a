/* C tests: statistics (tether_stats). */
#include "harness.h"

#include <errno.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

/* Whether the JSON text `json` holds `needle`; prints it when not. */
static bool json_has(const char *json, const char *needle)
{
    if (strstr(json, needle) != NULL)
        return true;
    printf("    %s not in %s\n", needle, json);
    return false;
}

/* Takes the handle's statistics into *out (freed with T.free_string). */
static tether_status stats_of(tether_db *db, char **out)
{
    *out = NULL;
    return T.stats(db, out);
}

static void test_stats(struct fixture *fx)
{
    tether_db *db = fx->db;
    char *json = NULL;

    /* Nothing queued yet. */
    CHECK_OK(stats_of(db, &json));
    CHECK(json != NULL);
    bool fresh = json[0] == '{' && json[strlen(json) - 1] == '}' &&
                 json_has(json, "\"running\":true") && json_has(json, "\"backends\":{") &&
                 json_has(json, "\"local\":{") && json_has(json, "\"queued\":0") &&
                 json_has(json, "\"pending\":0") && json_has(json, "\"last_error\":null");
    T.free_string(json);
    CHECK(fresh);

    /* Seven queued writes, one direct (not counted), then a flush. */
    for (int i = 0; i < 7; i++) {
        char key[16];
        snprintf(key, sizeof key, "s%d", i);
        CHECK_OK(put(db, "stats", key, "v", TETHER_QUEUE));
    }
    CHECK_OK(put(db, "stats", "direct", "v", 0));
    CHECK_OK(T.flush(db));
    CHECK(has(db, "stats", "s6", "v"));

    char want_path[200];
    snprintf(want_path, sizeof want_path, "\"path\":\"%s.outbox\"", fx->path);
    CHECK_OK(stats_of(db, &json));
    bool flushed = json_has(json, "\"queued\":7") && json_has(json, "\"applied\":7") &&
                   json_has(json, "\"pending\":0") && json_has(json, "\"failed\":0") &&
                   json_has(json, "\"unreachable_ms\":0") && json_has(json, "\"outbox\":{") &&
                   json_has(json, want_path) && json_has(json, "\"max_bytes\":") &&
                   json_has(json, "\"bytes\":0");
    T.free_string(json);
    CHECK(flushed);

    /* Stopped: not running, the counts kept. */
    CHECK_OK(T.stop(db));
    CHECK_OK(stats_of(db, &json));
    bool stopped = json_has(json, "\"running\":false") && json_has(json, "\"queued\":7");
    T.free_string(json);
    CHECK(stopped);
    CHECK_OK(T.start(db));
}

/* Without the durable outbox, "outbox" is null. */
static void test_stats_without_outbox(struct fixture *fx)
{
    CHECK_OK(open_with(fx, "{\"size\":10,\"interval\":0.05,\"durable\":false}", ""));
    CHECK_OK(put(fx->db, NULL, "k", "v", TETHER_QUEUE));
    CHECK_OK(T.flush(fx->db));
    char *json = NULL;
    CHECK_OK(stats_of(fx->db, &json));
    bool ok = json_has(json, "\"outbox\":null") && json_has(json, "\"applied\":1");
    T.free_string(json);
    CHECK(ok);

    char outbox[200];
    struct stat st;
    snprintf(outbox, sizeof outbox, "%s.outbox", fx->path);
    CHECK(stat(outbox, &st) != 0 && errno == ENOENT);
}

static void test_stats_bad_arguments(struct fixture *fx)
{
    char *json = STRING_SENTINEL;
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.stats(NULL, &json));
    CHECK(json == STRING_SENTINEL);
    CHECK(error_mentions("tether_stats"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.stats(fx->db, NULL));
    CHECK(error_mentions("out_json"));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.stats(NULL, NULL));
    T.free_string(NULL);
}

const struct test_case suite_stats[] = {
    {"stats", test_stats, true},
    {"stats_without_outbox", test_stats_without_outbox, false},
    {"stats_bad_arguments", test_stats_bad_arguments, true},
    END_OF_SUITE,
};
