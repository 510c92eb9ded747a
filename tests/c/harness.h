/*
 * The C tests' harness (harness.c): the library's functions as a table, the
 * checks, each case's fixture, helpers the suites share, and the runner.
 * The cases are in the suite_*.c files; harness.c lists the suites.
 *
 * Include this first: it sets the feature macro the system headers read.
 */
#ifndef TETHERDB_C_TESTS_HARNESS_H
#define TETHERDB_C_TESTS_HARNESS_H

#define _XOPEN_SOURCE 700 /* mkdtemp, nftw, pthread barriers, nanosleep */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tetherdb.h"

/* ------------------------------------------------------------------ */
/* The API table                                                       */
/* ------------------------------------------------------------------ */

/* The library is reached only through T: see harness.c's load_api. */
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
    tether_status (*write_ex)(tether_db *db, const char *backend, const char *bucket,
                              const char *key, const uint8_t *value, size_t value_len,
                              uint32_t flags, uint64_t ttl_ms, uint64_t version,
                              uint64_t *out_version);
    tether_status (*read_ex)(tether_db *db, const char *backend, const char *bucket,
                             const char *key, uint8_t **out_value, size_t *out_len,
                             uint64_t *out_version);
    tether_status (*delete_ex)(tether_db *db, const char *backend, const char *bucket,
                               const char *key, uint32_t flags, uint64_t version);
    tether_status (*touch)(tether_db *db, const char *backend, const char *bucket,
                           const char *key, uint64_t ttl_ms);
    tether_status (*increment)(tether_db *db, const char *backend, const char *bucket,
                               const char *key, int64_t delta, uint32_t shards,
                               int64_t *out_value);
    tether_status (*counter_total)(tether_db *db, const char *backend, const char *bucket,
                                   const char *key, uint32_t shards, int64_t *out_value);
    tether_status (*list)(tether_db *db, const char *backend, const char *bucket,
                          const char *prefix, const char *start_after, size_t page_size,
                          tether_page **out_page);
    tether_status (*list_ex)(tether_db *db, const char *backend, const char *bucket,
                             const char *prefix, const char *start_after, size_t page_size,
                             uint32_t flags, tether_page **out_page);
    tether_status (*delete_prefix)(tether_db *db, const char *backend, const char *bucket,
                                   const char *prefix, uint64_t *out_deleted);
    size_t (*page_len)(const tether_page *page);
    const char *(*page_key)(const tether_page *page, size_t i);
    const uint8_t *(*page_value)(const tether_page *page, size_t i, size_t *out_len);
    const char *(*page_next)(const tether_page *page);
    void (*page_free)(tether_page *page);
    void (*free)(uint8_t *value, size_t len);
    tether_status (*stats)(tether_db *db, char **out_json);
    tether_status (*copy)(tether_db *db, const char *from_backend, const char *to_backend,
                          const char *bucket, const char *prefix, uint32_t flags,
                          char **out_report_json);
    void (*free_string)(char *string);
    const char *(*last_error)(void);
    const char *(*status_name)(tether_status status);
    const char *(*version)(void);
};

extern struct api T;

/* ------------------------------------------------------------------ */
/* Checks                                                              */
/* ------------------------------------------------------------------ */

extern bool g_failed;      /* the current case has failed */
extern const char *g_note; /* printed with a failure: which row of a table */

/* The status's name, or "(not a status)" for a value outside the enum. */
const char *name_of(tether_status status);

/* Reports a failed check (with the statuses when got >= 0) and fails the case. */
void fail_at(const char *file, int line, const char *what, int got, int want);

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

/* Whether this thread's tether_last_error() holds `needle`. */
bool error_mentions(const char *needle);

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
tether_status open_with(struct fixture *fx, const char *queue_batch, const char *extra);

/* Sentinels: out-parameters must keep them when a call fails. */
extern int db_sentinel_object, page_sentinel_object;
extern uint8_t value_sentinel_object;
#define DB_SENTINEL ((tether_db *)&db_sentinel_object)
#define PAGE_SENTINEL ((tether_page *)&page_sentinel_object)
#define VALUE_SENTINEL (&value_sentinel_object)
#define LEN_SENTINEL ((size_t)0xdeadbeef)
extern char string_sentinel_object;
#define STRING_SENTINEL (&string_sentinel_object)

/* Writes `value` (a string, without its NUL) to the default backend. */
tether_status put(tether_db *db, const char *bucket, const char *key, const char *value,
                  uint32_t flags);

/* Whether `key` reads back as exactly `want_len` bytes equal to `want`. */
bool has_bytes(tether_db *db, const char *backend, const char *bucket, const char *key,
               const void *want, size_t want_len);

/* Whether `key` reads back from the default backend as the string `want`. */
bool has(tether_db *db, const char *bucket, const char *key, const char *want);

/* Whether reading `key` fails with TETHER_NOT_FOUND and leaves the outputs alone. */
bool absent(tether_db *db, const char *backend, const char *bucket, const char *key);

#define KEYS(...) ((const char *[]){__VA_ARGS__, NULL})
#define NO_KEYS ((const char *[]){NULL})

/* Whether one page of the listing holds exactly `want` (NULL-terminated),
 * in that order, and its next key is `want_next` (NULL: no next). */
bool page_is(tether_db *db, const char *bucket, const char *prefix, const char *start_after,
             size_t page_size, const char *const *want, const char *want_next);

void sleep_ms(long ms);

/* Counts this process's threads but the main thread, sled's I/O pool and
 * those named in `allowed` ('|'-separated; NULL: none); names them in `names`. */
int stray_threads(const char *allowed, char *names, size_t size);

/* Whether `path` could be written with `text`. */
bool write_file(const char *path, const char *text);

/* ------------------------------------------------------------------ */
/* Cases and suites                                                    */
/* ------------------------------------------------------------------ */

struct test_case {
    const char *name;
    void (*run)(struct fixture *);
    bool with_db; /* open fx->db on <dir>/db with DEFAULT_QUEUE first */
};

/* A suite is an array of cases ended by {NULL, NULL, false}, named in
 * harness.c's SUITES list and in CMakeLists.txt's TEST_SOURCES. */
#define END_OF_SUITE {NULL, NULL, false}

/* ------------------------------------------------------------------ */
/* This executable again, in a fresh process                           */
/* ------------------------------------------------------------------ */

/* With REOPEN_CHILD_ENV=<dir> in its environment, the executable runs
 * reopen_child(<dir>) (suite_queue.c) instead of the cases, and exits with
 * its result. g_argv is main's argv, to start it again with. */
#define REOPEN_CHILD_ENV "TETHERDB_C_REOPEN_CHILD"
extern char **g_argv;
int reopen_child(const char *dir);

#endif
