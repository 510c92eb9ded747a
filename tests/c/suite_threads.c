/* C tests: one handle from several threads; tether_last_error per thread. */
#include "harness.h"

#include <pthread.h>

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

const struct test_case suite_threads[] = {
    {"threads_write", test_threads_write, true},
    {"last_error_per_thread", test_last_error_per_thread, true},
    END_OF_SUITE,
};
