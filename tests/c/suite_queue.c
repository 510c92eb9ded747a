/* C tests: queued writes (TETHER_QUEUE), start, stop, flush and close. */
#include "harness.h"

#include <limits.h>
#include <pthread.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

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
 * flushers, local's sweep, the outbox's thread) with tether_close. Only sled's
 * process-wide I/O pool stays (header, Threads). */
static void test_no_threads_left_after_close(struct fixture *fx)
{
    char names[512];
    CHECK_OK(open_with(fx, DEFAULT_QUEUE, ""));
    CHECK_OK(put(fx->db, NULL, "k", "v", TETHER_QUEUE));
    CHECK_OK(T.flush(fx->db));
    CHECK_OK(T.stop(fx->db));
    int stray = stray_threads("log flusher|tetherdb-outbox|tetherdb-sweep", names, sizeof names);
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
#define REOPEN_ROUNDS 30
#define REOPEN_REFUSED 3 /* the child's exit status when the reopen fails */

extern char **environ;

/* What the harness's main runs instead of the cases with REOPEN_CHILD_ENV set. */
int reopen_child(const char *dir)
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

const struct test_case suite_queue[] = {
    {"queued_writes", test_queued_writes, true},
    {"queue_autostart_false", test_queue_autostart_false, false},
    {"queue_batches_without_flush", test_queue_batches_without_flush, false},
    {"close_applies_queued_writes", test_close_applies_queued_writes, false},
    {"stop_races_writers", test_stop_races_writers, false},
    {"no_threads_left_after_close", test_no_threads_left_after_close, false},
    {"reopen_right_after_close", test_reopen_right_after_close, false},
    END_OF_SUITE,
};
