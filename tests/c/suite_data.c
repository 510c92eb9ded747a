/* C tests: values written, read back, updated and deleted; absent keys. */
#include "harness.h"

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

const struct test_case suite_data[] = {
    {"round_trip", test_round_trip, true},
    {"binary_and_empty_values", test_binary_and_empty_values, true},
    {"absent_keys", test_absent_keys, true},
    END_OF_SUITE,
};
