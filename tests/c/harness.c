/*
 * C tests of the TetherDB C ABI (include/tetherdb.h; docs/c-api.md): the
 * harness. The cases are in the suite_*.c files, listed in SUITES below.
 *
 * One test body, three executables. The library is reached only through
 * the `struct api` table T:
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
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef TETHER_DLOPEN
#include <dlfcn.h>
#endif

/* ------------------------------------------------------------------ */
/* The suites                                                          */
/* ------------------------------------------------------------------ */

/* The case registry: one line per suite (suite_<name>.c), run in this order. */
#define SUITES(X)          \
    X(suite_open)          \
    X(suite_data)          \
    X(suite_bad_arguments) \
    X(suite_queue)         \
    X(suite_list)          \
    X(suite_threads)       \
    X(suite_stats)         \
    X(suite_versions)      \
    X(suite_expiry)        \
    X(suite_counters)      \
    X(suite_keys)          \
    X(suite_copy)

#define DECLARE_SUITE(name) extern const struct test_case name[];
SUITES(DECLARE_SUITE)
#define SUITE_ENTRY(name) name,
static const struct test_case *const suites[] = {SUITES(SUITE_ENTRY)};

/* ------------------------------------------------------------------ */
/* The API table                                                       */
/* ------------------------------------------------------------------ */

struct api T;

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
           LOAD(write_ex) && LOAD(read_ex) && LOAD(delete_ex) && LOAD(touch) &&
           LOAD(increment) && LOAD(counter_total) && LOAD(list) && LOAD(list_ex) &&
           LOAD(delete_prefix) && LOAD(page_len) && LOAD(page_key) && LOAD(page_value) &&
           LOAD(page_next) && LOAD(page_free) && LOAD(free) && LOAD(stats) && LOAD(copy) &&
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
        .write_ex = tether_write_ex,
        .read_ex = tether_read_ex,
        .delete_ex = tether_delete_ex,
        .touch = tether_touch,
        .increment = tether_increment,
        .counter_total = tether_counter_total,
        .list = tether_list,
        .list_ex = tether_list_ex,
        .delete_prefix = tether_delete_prefix,
        .page_len = tether_page_len,
        .page_key = tether_page_key,
        .page_value = tether_page_value,
        .page_next = tether_page_next,
        .page_free = tether_page_free,
        .free = tether_free,
        .stats = tether_stats,
        .copy = tether_copy,
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

bool g_failed;
const char *g_note;

const char *name_of(tether_status status)
{
    /* tether_status_name() only takes the enum's values. */
    return (unsigned)status <= TETHER_INTERNAL ? T.status_name(status) : "(not a status)";
}

void fail_at(const char *file, int line, const char *what, int got, int want)
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

bool error_mentions(const char *needle)
{
    return strstr(T.last_error(), needle) != NULL;
}

/* ------------------------------------------------------------------ */
/* Fixture and helpers                                                 */
/* ------------------------------------------------------------------ */

tether_status open_with(struct fixture *fx, const char *queue_batch, const char *extra)
{
    snprintf(fx->config, sizeof fx->config,
             "{\"local\":{\"filepath\":\"%s\"},\"queue_batch\":%s%s}", fx->path, queue_batch,
             extra);
    return T.open(fx->config, &fx->db);
}

int db_sentinel_object, page_sentinel_object;
uint8_t value_sentinel_object;
char string_sentinel_object;

tether_status put(tether_db *db, const char *bucket, const char *key, const char *value,
                  uint32_t flags)
{
    return T.write(db, NULL, bucket, key, (const uint8_t *)value, strlen(value), flags);
}

bool has_bytes(tether_db *db, const char *backend, const char *bucket, const char *key,
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

bool has(tether_db *db, const char *bucket, const char *key, const char *want)
{
    return has_bytes(db, NULL, bucket, key, want, strlen(want));
}

bool absent(tether_db *db, const char *backend, const char *bucket, const char *key)
{
    uint8_t *value = VALUE_SENTINEL;
    size_t len = LEN_SENTINEL;
    return T.read(db, backend, bucket, key, &value, &len) == TETHER_NOT_FOUND &&
           value == VALUE_SENTINEL && len == LEN_SENTINEL;
}

bool page_is(tether_db *db, const char *bucket, const char *prefix, const char *start_after,
             size_t page_size, const char *const *want, const char *want_next)
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

void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Whether `name` is one of the '|'-separated names of `list` (NULL: none). */
static bool listed(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *at = list; at != NULL; at = strchr(at, '|'), at = at ? at + 1 : NULL)
        if (strncmp(at, name, len) == 0 && (at[len] == '|' || at[len] == '\0'))
            return true;
    return false;
}

/* One look at /proc/self/task: see stray_threads. */
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
 * in `allowed` ('|'-separated; NULL: none), and names them in `names`. The
 * tests' own threads are all joined when it is called. A thread names
 * itself once it runs, so one that sled's pool has just started still
 * carries the name of the thread that started it: a thread counts only if
 * it is still there, under a name not allowed, after a short while.
 */
int stray_threads(const char *allowed, char *names, size_t size)
{
    int count = stray_threads_now(allowed, names, size);
    for (int tries = 0; tries < 20 && count > 0; tries++) {
        sleep_ms(10);
        count = stray_threads_now(allowed, names, size);
    }
    return count;
}

bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* ------------------------------------------------------------------ */
/* Runner                                                              */
/* ------------------------------------------------------------------ */

char **g_argv;

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
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        for (const struct test_case *tc = suites[s]; tc->name != NULL; tc++) {
            if (run_case(tc, cwd))
                passed++;
            else
                failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    /* LeakSanitizer reports at exit and then ends the process at once:
     * flush first, or a piped stdout would lose this line. */
    fflush(stdout);
    return failed == 0 ? 0 : 1;
}
