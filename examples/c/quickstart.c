/* TetherDB quickstart: open the embedded default, write, queue, read, list,
 * close. Build and run it with ./scripts/quickstart.sh. */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tetherdb.h"

/* Prints the failed call's status and message, and returns 1 from main. */
#define CHECK(call)                                                          \
  do {                                                                       \
    tether_status status_ = (call);                                          \
    if (status_ != TETHER_OK) {                                              \
      fprintf(stderr, "%s failed: %s: %s\n", #call,                          \
              tether_status_name(status_), tether_last_error());             \
      return 1;                                                              \
    }                                                                        \
  } while (0)

int main(void) {
  printf("TetherDB %s\n", tether_version());

  /* NULL (or "{}") opens the embedded default: a local store in ./tetherdb_data. */
  tether_db *db = NULL;
  CHECK(tether_open(NULL, &db));

  /* A direct write is stored before the call returns. */
  const char *greeting = "hello, world";
  CHECK(tether_write(db, NULL, "messages", "greeting", (const uint8_t *)greeting,
                     strlen(greeting), 0));

  /* A queued write returns at once; the worker applies it in a batch. */
  const char *later = "{\"level\": \"info\"}";
  CHECK(tether_write(db, NULL, "messages", "later", (const uint8_t *)later,
                     strlen(later), TETHER_QUEUE));
  CHECK(tether_flush(db)); /* waits until queued writes are applied */

  /* Read: the value is ours to free with tether_free. */
  uint8_t *value = NULL;
  size_t len = 0;
  CHECK(tether_read(db, NULL, "messages", "greeting", &value, &len));
  printf("read greeting: %.*s\n", (int)len, (const char *)value);
  tether_free(value, len);

  /* An absent key is TETHER_NOT_FOUND, with a message saying which. */
  tether_status status = tether_read(db, NULL, "messages", "absent", &value, &len);
  printf("read absent: %s (%s)\n", tether_status_name(status), tether_last_error());

  /* List the bucket page by page. The next marker belongs to its page, so
   * keep a copy of it before freeing the page. */
  char *after = NULL;
  do {
    tether_page *page = NULL;
    CHECK(tether_list(db, NULL, "messages", NULL, after, 10, &page));
    for (size_t i = 0; i < tether_page_len(page); i++) {
      size_t value_len = 0;
      const uint8_t *v = tether_page_value(page, i, &value_len);
      printf("listed %s = %.*s\n", tether_page_key(page, i), (int)value_len,
             (const char *)v);
    }
    free(after);
    after = tether_page_next(page) ? strdup(tether_page_next(page)) : NULL;
    tether_page_free(page);
  } while (after != NULL);

  CHECK(tether_close(db)); /* applies anything still queued */
  return 0;
}
