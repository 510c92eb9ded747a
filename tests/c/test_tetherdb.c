/*
 * C tests of the TetherDB C ABI (include/tetherdb.h; docs/c-api.md).
 *
 * One test body, three executables. The library is reached only through
 * the `struct api` table below:
 *   test_shared, test_static  fill it with the linked functions (so the
 *                             compiler also checks every signature against
 *                             the header);
 *   test_dlopen               (-DTETHER_DLOPEN) fills it with dlsym() from
 *                             the library named by argv[1] or, by default,
 *                             TETHERDB_SO_PATH.
 *
 * Each case runs in a fresh directory under /tmp, removed afterwards. The
 * last line printed is "N passed, M failed"; the exit status is non-zero
 * on any failure.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, pthread barriers, nanosleep */

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef TETHER_DLOPEN
#include <dlfcn.h>
#endif

#include "tetherdb.h"

/* ------------------------------------------------------------------ */
/* The API table                                                       */
/* ------------------------------------------------------------------ */

struct api {
    tether_status (*open)(const char *config_json, tether_db **out_db);
    tether_status (*open_file)(const char *path, tether_db **out_db);
    tether_status (*start)(tether_db *db);
    tether_status (*stop)(tether_db *db);
    tether_status (*flush)(tether_db *db);
    tether_status (*close)(tether_db *db);
    tether_status (*write)(tether_db *db, const char *backend, const char *bucket,
                           const char *key, const uint8_t *value, size_t value_len,
                           uint32_t flags);
    tether_status (*update)(tether_db *db, const char *backend, const char *bucket,
                            const char *key, const uint8_t *value, size_t value_len);
    tether_status (*read)(tether_db *db, const char *backend, const char *bucket,
                          const char *key, uint8_t **out_value, size_t *out_len);
    tether_status (*delete)(tether_db *db, const char *backend, const char *bucket,
                            const char *key);
    tether_status (*list)(tether_db *db, const char *backend, const char *bucket,
                          const char *prefix, const char *start_after, size_t page_size,
                          tether_page **out_page);
    size_t (*page_len)(const tether_page *page);
    const char *(*page_key)(const tether_page *page, size_t i);
    const uint8_t *(*page_value)(const tether_page *page, size_t i, size_t *out_len);
    const char *(*page_next)(const tether_page *page);
    void (*page_free)(tether_page *page);
    void (*free)(uint8_t *value, size_t len);
    tether_status (*stats)(tether_db *db, char **out_json);
    void (*free_string)(char *string);
    const char *(*last_error)(void);
    const char *(*status_name)(tether_status status);
    const char *(*version)(void);
};

static struct api T;

#ifdef TETHER_DLOPEN

#ifndef TETHERDB_SO_PATH
#define TETHERDB_SO_PATH "libtetherdb.so"
#endif

_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
               "dlsym results are stored into function pointers");

static bool load_symbol(void *lib, const char *name, void *field)
{
    void *symbol = dlsym(lib, name);
    if (symbol == NULL) {
        printf("dlsym(%s): %s\n", name, dlerror());
        return false;
    }
    /* POSIX guarantees this conversion; memcpy avoids ISO C's objection. */
    memcpy(field, &symbol, sizeof symbol);
    return true;
}

static bool load_api(const char *path)
{
    /*
     * The library is never dlclose()d: once the `local` backend has been
     * used, sled's process-wide I/O pool (sled-io-* threads) keeps running
     * code of this library until the process exits, and unloading it would
     * unmap that code under them (see the header's "Threads" notes).
     */
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        printf("dlopen(%s): %s\n", path, dlerror());
        return false;
    }
#define LOAD(field) load_symbol(lib, "tether_" #field, &T.field)
    return LOAD(open) && LOAD(open_file) && LOAD(start) && LOAD(stop) && LOAD(flush) &&
           LOAD(close) && LOAD(write) && LOAD(update) && LOAD(read) && LOAD(delete) &&
           LOAD(list) && LOAD(page_len) && LOAD(page_key) && LOAD(page_value) &&
           LOAD(page_next) && LOAD(page_free) && LOAD(free) && LOAD(stats) &&
           LOAD(free_string) && LOAD(last_error) && LOAD(status_name) && LOAD(version);
#undef LOAD
}

#else /* linked against libtetherdb.so or libtetherdb.a */

static bool load_api(const char *unused)
{
    (void)unused;
    T = (struct api){
        .open = tether_open,
        .open_file = tether_open_file,
        .start = tether_start,
        .stop = tether_stop,
        .flush = tether_flush,
        .close = tether_close,
        .write = tether_write,
        .update = tether_update,
        .read = tether_read,
        .delete = tether_delete,
        .list = tether_list,
        .page_len = tether_page_len,
        .page_key = tether_page_key,
        .page_value = tether_page_value,
        .page_next = tether_page_next,
        .page_free = tether_page_free,
        .free = tether_free,
        .stats = tether_stats,
        .free_string = tether_free_string,
        .last_error = tether_last_error,
        .status_name = tether_status_name,
        .version = tether_version,
    };
    return true;
}

#endif

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

static bool g_failed;       /* the current case has failed */
static const char *g_note;  /* printed with a failure: which row of a table */

static const char *name_of(tether_status status)
{
    /* tether_status_name() only takes the enum's values. */
    return (unsigned)status <= TETHER_INTERNAL ? T.status_name(status) : "(not a status)";
}

static void fail_at(const char *file, int line, const char *what, int got, int want)
{
    g_failed = true;
    printf("  %s:%d: check failed: %s\n", file, line, what);
    if (got >= 0)
        printf("    status %s (%d), expected %s (%d)\n", name_of((tether_status)got), got,
               name_of((tether_status)want), want);
    if (g_note != NULL)
        printf("    case: %s\n", g_note);
    printf("    tether_last_error() (this thread's latest failure): \"%s\"\n", T.last_error());
    fflush(stdout);
}

/* A failed check ends the test function; the runner cleans up after it. */
#define CHECK(cond)                                              \
    do {                                                         \
        if (!(cond)) {                                           \
            fail_at(__FILE__, __LINE__, #cond, -1, -1);          \
            return;                                              \
        }                                                        \
    } while (0)

#define CHECK_STATUS(want, call)                                      \
    do {                                                              \
        tether_status got_ = (call);                                  \
        if (got_ != (want)) {                                         \
            fail_at(__FILE__, __LINE__, #call, (int)got_, (int)(want)); \
            return;                                                   \
        }                                                             \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(TETHER_OK, call)

static bool error_mentions(const char *needle)
{
    return strstr(T.last_error(), needle) != NULL;
}

/* ------------------------------------------------------------------ */
/* Fixture and helpers                                                 */
/* ------------------------------------------------------------------ */

/* What a case gets: a fresh directory, and a handle on <dir>/db when asked. */
struct fixture {
    char dir[64];    /* /tmp/tetherdb-c-XXXXXX */
    char path[128];  /* <dir>/db: the local store */
    char config[1024];
    tether_db *db;   /* closed by the runner when non-NULL */
};

#define DEFAULT_QUEUE "{\"size\":10,\"interval\":0.05}"

/* Opens fx->db on fx->path with this queue_batch section and extra
 * top-level members (`extra` starts with a comma, or is ""). */
static tether_status open_with(struct fixture *fx, const char *queue_batch, const char *extra)
{
    snprintf(fx->config, sizeof fx->config,
             "{\"local\":{\"filepath\":\"%s\"},\"queue_batch\":%s%s}", fx->path, queue_batch,
             extra);
    return T.open(fx->config, &fx->db);
}

/* Sentinels: out-parameters must keep them when a call fails. */
static int db_sentinel_object, page_sentinel_object;
static uint8_t value_sentinel_object;
#define DB_SENTINEL ((tether_db *)&db_sentinel_object)
#define PAGE_SENTINEL ((tether_page *)&page_sentinel_object)
#define VALUE_SENTINEL (&value_sentinel_object)
#define LEN_SENTINEL ((size_t)0xdeadbeef)
static char string_sentinel_object;
#define STRING_SENTINEL (&string_sentinel_object)

static tether_status put(tether_db *db, const char *bucket, const char *key, const char *value,
                         uint32_t flags)
{
    return T.write(db, NULL, bucket, key, (const uint8_t *)value, strlen(value), flags);
}

/* Whether `key` reads back as exactly `want_len` bytes equal to `want`. */
static bool has_bytes(tether_db *db, const char *backend, const char *bucket, const char *key,
                      const void *want, size_t want_len)
{
    uint8_t *value = NULL;
    size_t len = 0;
    if (T.read(db, backend, bucket, key, &value, &len) != TETHER_OK)
        return false;
    bool same = value != NULL && len == want_len && (len == 0 || memcmp(value, want, len) == 0);
    T.free(value, len);
    return same;
}

static bool has(tether_db *db, const char *bucket, const char *key, const char *want)
{
    return has_bytes(db, NULL, bucket, key, want, strlen(want));
}

/* Whether reading `key` fails with TETHER_NOT_FOUND and leaves the outputs alone. */
static bool absent(tether_db *db, const char *backend, const char *bucket, const char *key)
{
    uint8_t *value = VALUE_SENTINEL;
    size_t len = LEN_SENTINEL;
    return T.read(db, backend, bucket, key, &value, &len) == TETHER_NOT_FOUND &&
           value == VALUE_SENTINEL && len == LEN_SENTINEL;
}

#define KEYS(...) ((const char *[]){__VA_ARGS__, NULL})
#define NO_KEYS ((const char *[]){NULL})

/* Whether one page of the listing holds exactly `want` (NULL-terminated),
 * in that order, and its next key is `want_next` (NULL: no next). */
static bool page_is(tether_db *db, const char *bucket, const char *prefix,
                    const char *start_after, size_t page_size, const char *const *want,
                    const char *want_next)
{
    tether_page *page = NULL;
    if (T.list(db, NULL, bucket, prefix, start_after, page_size, &page) != TETHER_OK)
        return false;
    size_t n = 0;
    while (want[n] != NULL)
        n++;
    bool same = T.page_len(page) == n;
    for (size_t i = 0; same && i < n; i++)
        same = T.page_key(page, i) != NULL && strcmp(T.page_key(page, i), want[i]) == 0;
    const char *next = T.page_next(page);
    same = same && (want_next == NULL ? next == NULL : next != NULL && !strcmp(next, want_next));
    if (!same) {
        printf("    listing bucket=%s prefix=%s start_after=%s gave:", bucket ? bucket : "NULL",
               prefix ? prefix : "NULL", start_after ? start_after : "NULL");
        for (size_t i = 0; i < T.page_len(page); i++)
            printf(" %s", T.page_key(page, i));
        printf(" (next %s)\n", next ? next : "NULL");
    }
    T.page_free(page);
    return same;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One look at /proc/self/task: see stray_threads. */
/* Whether `name` is one of the '|'-separated names of `list` (NULL: none). */
static bool listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *at = list; at != NULL; at = strchr(at, '|'), at = at ? at + 1 : NULL)
        if (strncmp(at, name, len) == 0 && (at[len] == '|' || at[len] == '\0'))
            return true;
    return false;
}

static int stray_threads_now(const char *allowed, char *names, size_t size)
{
    DIR *tasks = opendir("/proc/self/task");
    if (tasks == NULL)
        return -1;
    char self[32], path[300], comm[64];
    snprintf(self, sizeof self, "%ld", (long)getpid());
    int count = 0;
    names[0] = '\0';
    for (struct dirent *task; (task = readdir(tasks)) != NULL;) {
        if (task->d_name[0] == '.' || strcmp(task->d_name, self) == 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", task->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue; /* it has just ended */
        bool named = fgets(comm, sizeof comm, f) != NULL;
        fclose(f);
        if (!named)
            continue;
        comm[strcspn(comm, "\n")] = '\0';
        if (strncmp(comm, "sled-io-", 8) == 0 || listed(allowed, comm))
            continue;
        count++;
        size_t used = strlen(names);
        snprintf(names + used, size - used, "%s[%s]", used ? " " : "", comm);
    }
    closedir(tasks);
    return count;
}

/*
 * Counts this process's threads other than the main thread, sled's
 * process-wide I/O pool (sled-io-*, which never ends) and threads named
 * in `allowed` ('|'-separated; NULL: none), and names them in `names`. This file's own
 * threads are all joined when it is called. A thread names itself once it
 * runs, so one that sled's pool has just started still carries the name of
 * the thread that started it: a thread counts only if it is still there,
 * under a name not allowed, after a short while.
 */
static int stray_threads(const char *allowed, char *names, size_t size)
{
    int count = stray_threads_now(allowed, names, size);
    for (int tries = 0; tries < 20 && count > 0; tries++) {
        sleep_ms(10);
        count = stray_threads_now(allowed, names, size);
    }
    return count;
}

static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

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

/* ------------------------------------------------------------------ */
/* Data round trips                                                    */
/* ------------------------------------------------------------------ */

static void test_round_trip(struct fixture *fx)
{
    tether_db *db = fx->db;
    const char *const backends[] = {NULL, "", "local"};

    /* The default backend is reachable as NULL, "" and "local". */
    for (size_t b = 0; b < 3; b++) {
        const char *be = backends[b];
        const char *other = backends[(b + 1) % 3];
        g_note = be == NULL ? "backend NULL" : *be ? "backend local" : "backend \"\"";
        CHECK_OK(T.write(db, be, "rt", "key", (const uint8_t *)"one", 3, 0));
        CHECK(has_bytes(db, other, "rt", "key", "one", 3));
        CHECK_OK(T.update(db, be, "rt", "key", (const uint8_t *)"two!", 4));
        CHECK(has_bytes(db, other, "rt", "key", "two!", 4));
        CHECK_OK(T.delete(db, be, "rt", "key"));
        CHECK(absent(db, other, "rt", "key"));
    }
    g_note = NULL;

    /* Without a bucket (NULL and "" alike), and in buckets: distinct keys. */
    CHECK_OK(put(db, NULL, "same", "root", 0));
    CHECK_OK(put(db, "b1", "same", "in b1", 0));
    CHECK_OK(put(db, "b2", "same", "in b2", 0));
    CHECK(has(db, "", "same", "root"));
    CHECK(has(db, "b1", "same", "in b1"));
    CHECK(has(db, "b2", "same", "in b2"));
    CHECK_OK(T.update(db, NULL, "", "same", (const uint8_t *)"root2", 5));
    CHECK(has(db, NULL, "same", "root2"));
    CHECK_OK(T.delete(db, NULL, "b1", "same"));
    CHECK(absent(db, NULL, "b1", "same"));
    CHECK(has(db, "b2", "same", "in b2"));
    CHECK(has(db, NULL, "same", "root2"));

    /* write overwrites. */
    CHECK_OK(put(db, "b2", "same", "again", 0));
    CHECK(has(db, "b2", "same", "again"));

    /* The stored key is bucket + ":" + key; ':' is fine in keys. */
    CHECK_OK(put(db, "b", "x", "scheme", 0));
    CHECK(has(db, NULL, "b:x", "scheme"));
    CHECK_OK(put(db, "b", "a:b", "colon", 0));
    CHECK(has(db, NULL, "b:a:b", "colon"));

    /* UTF-8 keys and buckets. */
    CHECK_OK(put(db, "séance", "clé-ключ-鍵", "utf8", 0));
    CHECK(has(db, "séance", "clé-ключ-鍵", "utf8"));

    /* Long buckets and keys (bucket:key well over a hundred bytes). */
    char bucket[120], key[400];
    memset(bucket, 'b', sizeof bucket - 1);
    bucket[sizeof bucket - 1] = '\0';
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    CHECK_OK(put(db, bucket, key, "long", TETHER_QUEUE));
    CHECK_OK(T.flush(db));
    CHECK(has(db, bucket, key, "long"));
    CHECK_OK(T.update(db, NULL, bucket, key, (const uint8_t *)"longer", 6));
    CHECK(has(db, bucket, key, "longer"));
    CHECK(page_is(db, bucket, NULL, NULL, 10, KEYS(key), NULL));
    CHECK_OK(T.delete(db, NULL, bucket, key));
    CHECK(absent(db, NULL, bucket, key));
}

static void test_binary_and_empty_values(struct fixture *fx)
{
    tether_db *db = fx->db;
    static const uint8_t binary[] = {0, 1, 0, 0xff, 'a', 0, 0x80, 0};
    CHECK_OK(T.write(db, NULL, "bin", "nul", binary, sizeof binary, 0));
    CHECK(has_bytes(db, NULL, "bin", "nul", binary, sizeof binary));

    /* NULL with length 0 writes an empty value; read gives len 0 and a
     * non-NULL pointer, freed with tether_free. */
    CHECK_OK(T.write(db, NULL, "bin", "empty", NULL, 0, 0));
    uint8_t *value = NULL;
    size_t len = LEN_SENTINEL;
    CHECK_OK(T.read(db, NULL, "bin", "empty", &value, &len));
    CHECK(value != NULL);
    CHECK(len == 0);
    T.free(value, len);

    /* A non-NULL pointer with length 0 too, and update to empty. */
    CHECK_OK(T.write(db, NULL, "bin", "empty2", binary, 0, TETHER_QUEUE));
    CHECK_OK(T.flush(db));
    CHECK(has_bytes(db, NULL, "bin", "empty2", "", 0));
    CHECK_OK(T.update(db, NULL, "bin", "nul", NULL, 0));
    CHECK(has_bytes(db, NULL, "bin", "nul", "", 0));

    /* A large value (1 MiB), every byte value. */
    size_t big_len = (size_t)1 << 20;
    uint8_t *big = malloc(big_len);
    CHECK(big != NULL);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7 + i / 256);
    tether_status st = T.write(db, NULL, "bin", "big", big, big_len, 0);
    bool same = st == TETHER_OK && has_bytes(db, NULL, "bin", "big", big, big_len);
    free(big);
    CHECK(st == TETHER_OK);
    CHECK(same);
}

static void test_absent_keys(struct fixture *fx)
{
    tether_db *db = fx->db;
    uint8_t *value = VALUE_SENTINEL;
    size_t len = LEN_SENTINEL;

    CHECK_STATUS(TETHER_NOT_FOUND, T.read(db, NULL, "b", "missing-key", &value, &len));
    CHECK(value == VALUE_SENTINEL);
    CHECK(len == LEN_SENTINEL);
    CHECK(error_mentions("missing-key"));
    CHECK(error_mentions("local"));

    CHECK_STATUS(TETHER_NOT_FOUND, T.update(db, NULL, "b", "never", (const uint8_t *)"x", 1));
    CHECK(error_mentions("never"));
    CHECK(absent(db, NULL, "b", "never"));
    CHECK_STATUS(TETHER_NOT_FOUND, T.update(db, NULL, NULL, "never", NULL, 0));
    CHECK(absent(db, NULL, NULL, "never"));

    CHECK_STATUS(TETHER_NOT_FOUND, T.delete(db, NULL, "b", "gone"));
    CHECK(error_mentions("gone"));
    CHECK_OK(put(db, "b", "gone", "v", 0));
    CHECK_OK(T.delete(db, NULL, "b", "gone"));
    CHECK_STATUS(TETHER_NOT_FOUND, T.delete(db, NULL, "b", "gone"));
    CHECK(absent(db, NULL, "b", "gone"));
}

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

/* ------------------------------------------------------------------ */
/* Queued writes                                                       */
/* ------------------------------------------------------------------ */

static void test_queued_writes(struct fixture *fx)
{
    tether_db *db = fx->db;

    CHECK_OK(put(db, "q", "k1", "one", TETHER_QUEUE));
    CHECK_OK(T.flush(db));
    CHECK(has(db, "q", "k1", "one"));

    /* The last queued write to a key wins. */
    for (int i = 0; i < 25; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        CHECK_OK(put(db, "q", "k1", v, TETHER_QUEUE));
    }
    CHECK_OK(T.flush(db));
    CHECK(has(db, "q", "k1", "v24"));

    /* Many more writes than the queue holds (capacity 10000 by default). */
    for (int i = 0; i < 12000; i++) {
        char key[16];
        snprintf(key, sizeof key, "many%05d", i);
        CHECK_OK(put(db, "q", key, key, TETHER_QUEUE));
    }
    CHECK_OK(T.flush(db));
    CHECK(has(db, "q", "many00000", "many00000"));
    CHECK(has(db, "q", "many11999", "many11999"));

    /* Stopped: queued writes are refused, direct writes still work. */
    CHECK_OK(T.stop(db));
    CHECK_OK(T.stop(db));
    CHECK_STATUS(TETHER_NOT_RUNNING, put(db, "q", "k2", "two", TETHER_QUEUE));
    CHECK(error_mentions("k2"));
    CHECK_OK(T.flush(db));
    CHECK(absent(db, NULL, "q", "k2"));
    CHECK_OK(put(db, "q", "direct", "yes", 0));
    CHECK(has(db, "q", "direct", "yes"));

    /* Started again (idempotently), queued writes work. */
    CHECK_OK(T.start(db));
    CHECK_OK(T.start(db));
    CHECK_OK(put(db, "q", "k3", "three", TETHER_QUEUE));
    CHECK_OK(T.flush(db));
    CHECK(has(db, "q", "k3", "three"));

    /* stop applies what is queued before it returns. */
    CHECK_OK(put(db, "q", "k4", "four", TETHER_QUEUE));
    CHECK_OK(T.stop(db));
    CHECK(has(db, "q", "k4", "four"));
    CHECK_OK(T.start(db));
}

static void test_queue_autostart_false(struct fixture *fx)
{
    CHECK_OK(open_with(fx, "{\"size\":10,\"interval\":0.05,\"autostart\":false}", ""));
    tether_db *db = fx->db;

    CHECK_STATUS(TETHER_NOT_RUNNING, put(db, NULL, "k", "v", TETHER_QUEUE));
    CHECK_STATUS(TETHER_NOT_RUNNING, put(db, NULL, "k", "v", TETHER_QUEUE));
    CHECK(absent(db, NULL, NULL, "k"));
    CHECK_OK(T.start(db));
    CHECK_OK(put(db, NULL, "k", "v", TETHER_QUEUE));
    CHECK_OK(T.flush(db));
    CHECK(has(db, NULL, "k", "v"));
}

/* Without a flush, a batch goes out once it is full or once its oldest
 * write has waited `interval`. The bounds are generous (valgrind). */
static bool appears_within(tether_db *db, const char *key, const char *value, long ms)
{
    for (long waited = 0; waited <= ms; waited += 10) {
        if (has(db, NULL, key, value))
            return true;
        sleep_ms(10);
    }
    return false;
}

static void test_queue_batches_without_flush(struct fixture *fx)
{
    /* A trickle: one write, a batch of 1000 that will never fill. */
    CHECK_OK(open_with(fx, "{\"size\":1000,\"interval\":0.05}", ""));
    CHECK_OK(put(fx->db, NULL, "trickle", "t", TETHER_QUEUE));
    CHECK(appears_within(fx->db, "trickle", "t", 20000));
    CHECK_OK(T.close(fx->db));
    fx->db = NULL;

    /* A full batch of 10 with an interval of an hour. */
    CHECK_OK(open_with(fx, "{\"size\":10,\"interval\":3600}", ""));
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "full%d", i);
        CHECK_OK(put(fx->db, NULL, key, "f", TETHER_QUEUE));
    }
    CHECK(appears_within(fx->db, "full9", "f", 20000));
    CHECK(has(fx->db, NULL, "full0", "f"));
}

static void test_close_applies_queued_writes(struct fixture *fx)
{
    /* Nothing would go out on its own: the batch never fills nor ages. */
    CHECK_OK(open_with(fx, "{\"size\":5000,\"interval\":3600}", ""));
    char key[16], value[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "c%04d", i);
        snprintf(value, sizeof value, "value %d", i);
        CHECK_OK(put(fx->db, "close", key, value, TETHER_QUEUE));
    }
    tether_status st = T.close(fx->db);
    fx->db = NULL;
    CHECK_OK(st);

    CHECK_OK(T.open(fx->config, &fx->db)); /* the same store */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "c%04d", i);
        snprintf(value, sizeof value, "value %d", i);
        g_note = key;
        CHECK(has(fx->db, "close", key, value));
    }
    g_note = NULL;
}

/* Writers racing tether_stop: each queued write either returns OK, and is
 * then applied by the time stop returns, or TETHER_NOT_RUNNING. */
struct stop_racer {
    tether_db *db;
    int id;
    int accepted; /* writes 0..accepted-1 returned TETHER_OK */
    tether_status end;
};

static void *stop_racer_main(void *arg)
{
    struct stop_racer *r = arg;
    char key[32];
    for (;;) {
        snprintf(key, sizeof key, "s%d-%06d", r->id, r->accepted);
        r->end = put(r->db, "race", key, key, TETHER_QUEUE);
        if (r->end != TETHER_OK)
            return NULL;
        r->accepted++;
    }
}

static void test_stop_races_writers(struct fixture *fx)
{
    /* A small queue, so that writers also wait on a full one. */
    CHECK_OK(open_with(fx, "{\"size\":10,\"interval\":0.05,\"capacity\":4}", ""));
    struct stop_racer racers[4];
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        racers[t] = (struct stop_racer){.db = fx->db, .id = t};
        CHECK(pthread_create(&threads[t], NULL, stop_racer_main, &racers[t]) == 0);
    }
    sleep_ms(100);
    tether_status st = T.stop(fx->db);
    for (int t = 0; t < 4; t++)
        pthread_join(threads[t], NULL);
    CHECK_OK(st);

    char key[32];
    for (int t = 0; t < 4; t++) {
        CHECK_STATUS(TETHER_NOT_RUNNING, racers[t].end);
        for (int i = 0; i < racers[t].accepted; i++) {
            snprintf(key, sizeof key, "s%d-%06d", t, i);
            g_note = key;
            CHECK(has(fx->db, "race", key, key));
        }
        snprintf(key, sizeof key, "s%d-%06d", t, racers[t].accepted);
        CHECK(absent(fx->db, NULL, "race", key)); /* the refused one */
    }
    g_note = NULL;
}

/* ------------------------------------------------------------------ */
/* Closing                                                             */
/* ------------------------------------------------------------------ */

/* A handle's workers end with tether_stop; the threads of its stores (sled's
 * flushers, the outbox's thread) with tether_close. Only sled's
 * process-wide I/O pool stays (header, Threads). */
static void test_no_threads_left_after_close(struct fixture *fx)
{
    char names[512];
    CHECK_OK(open_with(fx, DEFAULT_QUEUE, ""));
    CHECK_OK(put(fx->db, NULL, "k", "v", TETHER_QUEUE));
    CHECK_OK(T.flush(fx->db));
    CHECK_OK(T.stop(fx->db));
    int stray = stray_threads("log flusher|tetherdb-outbox", names, sizeof names);
    if (stray != 0)
        printf("    after tether_stop: %s\n", names);
    CHECK(stray == 0);
    CHECK_OK(T.start(fx->db));
    CHECK_OK(put(fx->db, NULL, "k", "v2", TETHER_QUEUE));

    tether_status st = T.close(fx->db);
    fx->db = NULL;
    CHECK_OK(st);
    stray = stray_threads(NULL, names, sizeof names);
    if (stray != 0)
        printf("    after tether_close: %s\n", names);
    CHECK(stray == 0);
}

/*
 * Once tether_close has returned, the store is free: TETHER_IO is for a
 * store another handle holds (header, tether_open). The race this checks
 * shows most in a process whose sled I/O pool has just started, so each
 * round is a fresh process: this executable again, in reopen_child().
 */
#define REOPEN_CHILD_ENV "TETHERDB_C_REOPEN_CHILD"
#define REOPEN_ROUNDS 30
#define REOPEN_REFUSED 3 /* the child's exit status when the reopen fails */

static char **g_argv;
extern char **environ;

static int reopen_child(const char *dir)
{
    char config[512], key[16];
    snprintf(config, sizeof config,
             "{\"local\":{\"filepath\":\"%s\"},"
             "\"queue_batch\":{\"size\":100000,\"interval\":3600}}", dir);
    tether_db *db = NULL;
    if (T.open(config, &db) != TETHER_OK)
        return 2;
    /* One big batch, applied by the close. */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%04d", i);
        if (put(db, NULL, key, key, TETHER_QUEUE) != TETHER_OK)
            return 2;
    }
    if (T.close(db) != TETHER_OK)
        return 2;
    db = NULL;
    tether_status st = T.open(config, &db);
    if (st != TETHER_OK) {
        printf("    reopening %s right after tether_close: %s: %s\n", dir, name_of(st),
               T.last_error());
        return REOPEN_REFUSED;
    }
    bool ok = has(db, NULL, "k0999", "k0999");
    return T.close(db) == TETHER_OK && ok ? 0 : 2;
}

static void test_reopen_right_after_close(struct fixture *fx)
{
    char exe[PATH_MAX], env[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n] = '\0';

    /* The environment plus REOPEN_CHILD_ENV=<dir>. */
    size_t count = 0;
    while (environ[count] != NULL)
        count++;
    char **envp = calloc(count + 2, sizeof *envp);
    CHECK(envp != NULL);
    memcpy(envp, environ, count * sizeof *envp);
    envp[count] = env;

    int round, status = 0;
    for (round = 1; round <= REOPEN_ROUNDS && status == 0; round++) {
        snprintf(env, sizeof env, REOPEN_CHILD_ENV "=%s/store%02d", fx->dir, round);
        pid_t pid;
        fflush(stdout);
        if (posix_spawn(&pid, exe, NULL, NULL, g_argv, envp) != 0 ||
            waitpid(pid, &status, 0) != pid)
            status = -1;
    }
    free(envp);
    if (status != 0)
        printf("    fresh process %d of %d: %s %d\n", round - 1, REOPEN_ROUNDS,
               WIFEXITED(status) ? "exit status" : "wait status",
               WIFEXITED(status) ? WEXITSTATUS(status) : status);
    CHECK(status == 0 || (WIFEXITED(status) && WEXITSTATUS(status) == REOPEN_REFUSED));
    CHECK(status == 0);
}

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

/* ------------------------------------------------------------------ */
/* Threads                                                             */
/* ------------------------------------------------------------------ */

#define WRITERS 8
#define WRITES_PER_WRITER 1000

struct writer {
    tether_db *db;
    int id;
    int failures;
    tether_status first_failure;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    char key[32];
    for (int i = 0; i < WRITES_PER_WRITER; i++) {
        snprintf(key, sizeof key, "t%d-%04d", w->id, i);
        /* Every other write goes through the queue. */
        tether_status st = put(w->db, "thr", key, key, i % 2 ? TETHER_QUEUE : 0);
        if (st != TETHER_OK && w->failures++ == 0)
            w->first_failure = st;
    }
    return NULL;
}

struct page_reader {
    tether_page *page;
    size_t matching; /* entries whose value equals their key */
};

static void *page_reader_main(void *arg)
{
    struct page_reader *r = arg;
    for (size_t i = 0; i < T.page_len(r->page); i++) {
        size_t len = 0;
        const char *key = T.page_key(r->page, i);
        const uint8_t *value = T.page_value(r->page, i, &len);
        if (key && value && len == strlen(key) && memcmp(key, value, len) == 0)
            r->matching++;
    }
    return NULL;
}

static void test_threads_write(struct fixture *fx)
{
    struct writer writers[WRITERS];
    pthread_t threads[WRITERS];
    for (int t = 0; t < WRITERS; t++) {
        writers[t] = (struct writer){.db = fx->db, .id = t};
        CHECK(pthread_create(&threads[t], NULL, writer_main, &writers[t]) == 0);
    }
    for (int t = 0; t < WRITERS; t++)
        CHECK(pthread_join(threads[t], NULL) == 0);
    for (int t = 0; t < WRITERS; t++)
        CHECK_STATUS(TETHER_OK, writers[t].failures ? writers[t].first_failure : TETHER_OK);
    CHECK_OK(T.flush(fx->db));

    char key[32];
    for (int t = 0; t < WRITERS; t++) {
        for (int i = 0; i < WRITES_PER_WRITER; i++) {
            snprintf(key, sizeof key, "t%d-%04d", t, i);
            g_note = key;
            CHECK(has(fx->db, "thr", key, key));
        }
    }
    g_note = NULL;

    /* One page, read from several threads at once. */
    struct page_reader readers[4];
    CHECK_OK(T.list(fx->db, NULL, "thr", NULL, NULL, 100000, &readers[0].page));
    for (int t = 0; t < 4; t++) {
        readers[t] = (struct page_reader){.page = readers[0].page};
        CHECK(pthread_create(&threads[t], NULL, page_reader_main, &readers[t]) == 0);
    }
    for (int t = 0; t < 4; t++)
        pthread_join(threads[t], NULL);
    size_t n = T.page_len(readers[0].page);
    bool last = T.page_next(readers[0].page) == NULL;
    T.page_free(readers[0].page);
    CHECK(n == WRITERS * WRITES_PER_WRITER);
    CHECK(last);
    for (int t = 0; t < 4; t++)
        CHECK(readers[t].matching == n);
}

struct failer {
    tether_db *db;
    pthread_barrier_t *barrier;
    int which;
    bool empty_at_start;
    tether_status status;
    char message[512];
};

static void *failer_main(void *arg)
{
    struct failer *f = arg;
    const char *before = T.last_error();
    f->empty_at_start = before != NULL && before[0] == '\0';
    if (f->which == 0) {
        uint8_t *value = NULL;
        size_t len = 0;
        f->status = T.read(f->db, NULL, NULL, "absent-key-of-thread-A", &value, &len);
    } else {
        f->status = put(f->db, "bucket:of-thread-B", "k", "v", 0);
    }
    /* Both have failed before either reads its message. */
    pthread_barrier_wait(f->barrier);
    snprintf(f->message, sizeof f->message, "%s", T.last_error());
    return NULL;
}

static void test_last_error_per_thread(struct fixture *fx)
{
    CHECK_STATUS(TETHER_NOT_FOUND, T.delete(fx->db, NULL, NULL, "absent-key-of-main"));

    pthread_barrier_t barrier;
    CHECK(pthread_barrier_init(&barrier, NULL, 2) == 0);
    struct failer failers[2] = {
        {.db = fx->db, .barrier = &barrier, .which = 0},
        {.db = fx->db, .barrier = &barrier, .which = 1},
    };
    pthread_t threads[2];
    for (int t = 0; t < 2; t++)
        CHECK(pthread_create(&threads[t], NULL, failer_main, &failers[t]) == 0);
    for (int t = 0; t < 2; t++)
        CHECK(pthread_join(threads[t], NULL) == 0);
    pthread_barrier_destroy(&barrier);

    /* "" (never NULL) on a thread that has not failed yet. */
    CHECK(failers[0].empty_at_start && failers[1].empty_at_start);
    CHECK_STATUS(TETHER_NOT_FOUND, failers[0].status);
    CHECK_STATUS(TETHER_INVALID_ARGUMENT, failers[1].status);
    CHECK(strstr(failers[0].message, "absent-key-of-thread-A") != NULL);
    CHECK(strstr(failers[0].message, "of-thread-B") == NULL);
    CHECK(strstr(failers[1].message, "of-thread-B") != NULL);
    CHECK(strstr(failers[1].message, "absent-key-of-thread-A") == NULL);
    /* This thread's message is still its own. */
    CHECK(error_mentions("absent-key-of-main"));
}

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

/* ------------------------------------------------------------------ */
/* Runner                                                              */
/* ------------------------------------------------------------------ */

struct test_case {
    const char *name;
    void (*run)(struct fixture *);
    bool with_db; /* open fx->db on <dir>/db with DEFAULT_QUEUE first */
};

static const struct test_case cases[] = {
    {"version_and_status_names", test_version_and_status_names, false},
    {"open_embedded_default", test_open_embedded_default, false},
    {"open_file", test_open_file, false},
    {"open_errors", test_open_errors, false},
    {"round_trip", test_round_trip, true},
    {"binary_and_empty_values", test_binary_and_empty_values, true},
    {"absent_keys", test_absent_keys, true},
    {"bad_arguments_write", test_bad_arguments_write, true},
    {"bad_arguments_update", test_bad_arguments_update, true},
    {"bad_arguments_read", test_bad_arguments_read, true},
    {"bad_arguments_delete", test_bad_arguments_delete, true},
    {"bad_arguments_list", test_bad_arguments_list, true},
    {"unconfigured_backends", test_unconfigured_backends, false},
    {"null_handles_and_pages", test_null_handles_and_pages, true},
    {"queued_writes", test_queued_writes, true},
    {"queue_autostart_false", test_queue_autostart_false, false},
    {"queue_batches_without_flush", test_queue_batches_without_flush, false},
    {"close_applies_queued_writes", test_close_applies_queued_writes, false},
    {"stop_races_writers", test_stop_races_writers, false},
    {"no_threads_left_after_close", test_no_threads_left_after_close, false},
    {"reopen_right_after_close", test_reopen_right_after_close, false},
    {"list_pages", test_list_pages, true},
    {"list_bucket_isolation", test_list_bucket_isolation, true},
    {"list_prefix_and_start_after", test_list_prefix_and_start_after, true},
    {"threads_write", test_threads_write, true},
    {"last_error_per_thread", test_last_error_per_thread, true},
    {"stats", test_stats, true},
    {"stats_without_outbox", test_stats_without_outbox, false},
    {"stats_bad_arguments", test_stats_bad_arguments, true},
};

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path);
}

static bool run_case(const struct test_case *tc, const char *cwd)
{
    struct fixture fx = {.db = NULL};
    g_failed = false;
    g_note = NULL;

    snprintf(fx.dir, sizeof fx.dir, "/tmp/tetherdb-c-XXXXXX");
    if (mkdtemp(fx.dir) == NULL) {
        printf("FAIL %s: mkdtemp: %s\n", tc->name, strerror(errno));
        return false;
    }
    snprintf(fx.path, sizeof fx.path, "%s/db", fx.dir);

    tether_status st = TETHER_OK;
    if (tc->with_db && (st = open_with(&fx, DEFAULT_QUEUE, "")) != TETHER_OK) {
        fail_at(__FILE__, __LINE__, "opening the fixture's handle", (int)st, TETHER_OK);
        fx.db = NULL;
    } else {
        tc->run(&fx);
    }
    if (fx.db != NULL && (st = T.close(fx.db)) != TETHER_OK)
        fail_at(__FILE__, __LINE__, "tether_close(fx.db)", (int)st, TETHER_OK);

    if (chdir(cwd) != 0) {
        printf("FAIL %s: cannot chdir back to %s\n", tc->name, cwd);
        g_failed = true;
    }
    if (nftw(fx.dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        printf("FAIL %s: cannot remove %s\n", tc->name, fx.dir);
        g_failed = true;
    }
    printf("%s %s\n", g_failed ? "FAIL" : "ok  ", tc->name);
    fflush(stdout);
    return !g_failed;
}

int main(int argc, char **argv)
{
#ifdef TETHER_DLOPEN
    const char *library = argc > 1 ? argv[1] : TETHERDB_SO_PATH;
#else
    const char *library = NULL;
    (void)argc;
#endif
    if (!load_api(library)) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    g_argv = argv;
    const char *child_dir = getenv(REOPEN_CHILD_ENV);
    if (child_dir != NULL)
        return reopen_child(child_dir);

    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL) {
        perror("getcwd");
        return 1;
    }

    int passed = 0, failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (run_case(&cases[i], cwd))
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    /* LeakSanitizer reports at exit and then ends the process at once:
     * flush first, or a piped stdout would lose this line. */
    fflush(stdout);
    return failed == 0 ? 0 : 1;
}
