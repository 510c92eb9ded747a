/* C tests: the version, status names, and opening a handle (tether_open, tether_open_file). */
#include "harness.h"

#include <sys/stat.h>
#include <unistd.h>


/* ------------------------------------------------------------------ */
/* Version and status names                                            */
/* ------------------------------------------------------------------ */

static void test_version_and_status_names(struct fixture *fx)
{
    (void)fx;
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", TETHER_VERSION_MAJOR, TETHER_VERSION_MINOR,
             TETHER_VERSION_PATCH);
    CHECK(T.version() != NULL);
    CHECK(strcmp(T.version(), want) == 0);

    static const char *const names[] = {
        "TETHER_OK",          "TETHER_NOT_FOUND",   "TETHER_INVALID_ARGUMENT",
        "TETHER_CONFIG",      "TETHER_UNKNOWN_BACKEND", "TETHER_UNAVAILABLE",
        "TETHER_TOO_LARGE",   "TETHER_NOT_RUNNING", "TETHER_CONFLICT",
        "TETHER_IO",          "TETHER_INTERNAL",
    };
    _Static_assert(sizeof names / sizeof names[0] == TETHER_INTERNAL + 1, "one name per status");
    for (int s = TETHER_OK; s <= TETHER_INTERNAL; s++) {
        g_note = names[s];
        CHECK(T.status_name((tether_status)s) != NULL);
        CHECK(strcmp(T.status_name((tether_status)s), names[s]) == 0);
    }
    g_note = NULL;
    CHECK(TETHER_QUEUE == 1);
}

/* ------------------------------------------------------------------ */
/* Opening                                                             */
/* ------------------------------------------------------------------ */

/* NULL, "" and "{}" all open ./tetherdb_data (the runner restores the cwd). */
static void test_open_embedded_default(struct fixture *fx)
{
    CHECK(chdir(fx->dir) == 0);

    CHECK_OK(T.open(NULL, &fx->db));
    CHECK_OK(put(fx->db, NULL, "k", "from NULL", 0));
    CHECK_OK(T.close(fx->db));
    fx->db = NULL;

    char data_dir[160];
    struct stat st;
    snprintf(data_dir, sizeof data_dir, "%s/tetherdb_data", fx->dir);
    CHECK(stat(data_dir, &st) == 0 && S_ISDIR(st.st_mode));

    CHECK_OK(T.open("", &fx->db));
    CHECK(has(fx->db, NULL, "k", "from NULL"));
    CHECK_OK(put(fx->db, NULL, "k", "from empty", 0));
    CHECK_OK(T.close(fx->db));
    fx->db = NULL;

    CHECK_OK(T.open("{}", &fx->db));
    CHECK(has(fx->db, NULL, "k", "from empty"));
    CHECK(has_bytes(fx->db, "local", NULL, "k", "from empty", 10));
}

static void test_open_file(struct fixture *fx)
{
    char path[160], json[512];
    tether_db *db = DB_SENTINEL;

    snprintf(path, sizeof path, "%s/config.json", fx->dir);
    snprintf(json, sizeof json,
             "{\n  \"logging\": \"warn\",\n  \"local\": {\"filepath\": \"%s\"},\n"
             "  \"queue_batch\": {\"size\": 10, \"interval\": 0.05}\n}\n",
             fx->path);
    CHECK(write_file(path, json));
    CHECK_OK(T.open_file(path, &fx->db));
    CHECK(fx->db != NULL);
    CHECK_OK(put(fx->db, "b", "k", "v", TETHER_QUEUE));
    CHECK_OK(T.flush(fx->db));
    CHECK(has(fx->db, "b", "k", "v"));

    /* A missing file. */
    snprintf(path, sizeof path, "%s/missing.json", fx->dir);
    CHECK_STATUS(TETHER_CONFIG, T.open_file(path, &db));
    CHECK(db == DB_SENTINEL);
    CHECK(error_mentions("missing.json"));

    /* Invalid JSON. */
    snprintf(path, sizeof path, "%s/broken.json", fx->dir);
    CHECK(write_file(path, "{\"local\": {"));
    CHECK_STATUS(TETHER_CONFIG, T.open_file(path, &db));
    CHECK(db == DB_SENTINEL);

    /* An unknown key. */
    snprintf(path, sizeof path, "%s/typo.json", fx->dir);
    CHECK(write_file(path, "{\"local\": {\"filepath\": \"x\"}, \"queue_bacth\": {}}"));
    CHECK_STATUS(TETHER_CONFIG, T.open_file(path, &db));
    CHECK(db == DB_SENTINEL);
    CHECK(error_mentions("queue_bacth"));

    /* Bad pointers and a path that is not UTF-8. */
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.open_file(NULL, &db));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.open_file(path, NULL));
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.open_file("/tmp/\xff.json", &db));
    CHECK(db == DB_SENTINEL);
}

static void test_open_errors(struct fixture *fx)
{
    char json[512];
    tether_db *db = DB_SENTINEL;

    CHECK_STATUS(TETHER_CONFIG, T.open("{\"local\": ", &db));
    CHECK(db == DB_SENTINEL);
    CHECK_STATUS(TETHER_CONFIG, T.open("[]", &db));
    CHECK(db == DB_SENTINEL);

    /* Unknown keys, at the top and inside a section, are named. */
    snprintf(json, sizeof json, "{\"local\":{\"filepath\":\"%s\"},\"bogus_setting\":1}", fx->path);
    CHECK_STATUS(TETHER_CONFIG, T.open(json, &db));
    CHECK(db == DB_SENTINEL);
    CHECK(error_mentions("bogus_setting"));
    snprintf(json, sizeof json, "{\"local\":{\"filepath\":\"%s\",\"compresion\":true}}", fx->path);
    CHECK_STATUS(TETHER_CONFIG, T.open(json, &db));
    CHECK(error_mentions("compresion"));

    /* Invalid values. */
    snprintf(json, sizeof json, "{\"local\":{\"filepath\":\"%s\"},\"queue_batch\":{\"size\":0}}",
             fx->path);
    CHECK_STATUS(TETHER_CONFIG, T.open(json, &db));
    snprintf(json, sizeof json, "{\"local\":{\"filepath\":\"%s\"},\"default_backend\":\"nope\"}",
             fx->path);
    CHECK_STATUS(TETHER_CONFIG, T.open(json, &db));
    CHECK(db == DB_SENTINEL);

    snprintf(json, sizeof json, "{\"local\":{\"filepath\":\"\"}}");
    CHECK_STATUS(TETHER_CONFIG, T.open(json, &db));
    snprintf(json, sizeof json, "{\"local\":{\"filepath\":\"%s\"},\"logging\":\"loud\"}",
             fx->path);
    CHECK_STATUS(TETHER_CONFIG, T.open(json, &db));
    CHECK(error_mentions("loud"));
    CHECK(db == DB_SENTINEL);

    /* Not UTF-8. */
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.open("{\"logging\":\"\xff\"}", &db));
    CHECK(db == DB_SENTINEL);

    /* NULL out_db fails before anything is opened or created. */
    snprintf(json, sizeof json, "{\"local\":{\"filepath\":\"%s\"}}", fx->path);
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, T.open(json, NULL));
    CHECK(error_mentions("out_db"));
    CHECK(access(fx->path, F_OK) != 0);

    /* A second handle on a store another handle holds: TETHER_IO. */
    CHECK_OK(T.open(json, &fx->db));
    CHECK_STATUS(TETHER_IO, T.open(json, &db));
    CHECK(db == DB_SENTINEL);
    CHECK(error_mentions("local"));
}

const struct test_case suite_open[] = {
    {"version_and_status_names", test_version_and_status_names, false},
    {"open_embedded_default", test_open_embedded_default, false},
    {"open_file", test_open_file, false},
    {"open_errors", test_open_errors, false},
    END_OF_SUITE,
};
