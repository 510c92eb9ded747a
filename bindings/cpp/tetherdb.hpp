// TetherDB for C++17: a header-only wrapper over the C ABI of tetherdb.h.
//
// It converts types and errors and nothing else: every call is one C call,
// plus a copy of what it returns (a value, a page). Failures throw
// tetherdb::Error with the C status and the library's message; an absent key
// is not a failure (read returns std::nullopt, update, remove and touch
// false), a failed condition is (Error with status() TETHER_CONFLICT).
//
//   tetherdb::Db db = tetherdb::Db::open();          // embedded default
//   db.write("greeting", "hello", {.bucket = "messages"});
//   std::optional<std::string> v = db.read("greeting", {.bucket = "messages"});
//   std::int64_t n = db.increment("visits", 1);      // stored as "1", "2", ...
//
// (Designated initializers need C++20; in C++17 set the Options fields one
// by one.) Link with -ltetherdb, or use find_package(tetherdb) /
// pkg-config tetherdb.
#ifndef TETHERDB_HPP
#define TETHERDB_HPP

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "tetherdb.h"

namespace tetherdb {

// A failed call: the C status and the library's message for it, which names
// the function, the backend, the key and the cause.
class Error : public std::runtime_error {
 public:
  Error(tether_status status, const std::string& message)
      : std::runtime_error(std::string(tether_status_name(status)) + ": " + message),
        status_(status) {}
  tether_status status() const noexcept { return status_; }

 private:
  tether_status status_;
};

namespace detail {

// tether_last_error() is per thread: read it right after the failing call,
// on the same thread, before anything else can fail.
inline void check(tether_status status) {
  if (status != TETHER_OK) throw Error(status, tether_last_error());
}

inline const std::uint8_t* bytes(std::string_view v) {
  return reinterpret_cast<const std::uint8_t*>(v.data());
}

struct PageDeleter {
  void operator()(tether_page* page) const noexcept { tether_page_free(page); }
};
using PagePtr = std::unique_ptr<tether_page, PageDeleter>;

// The C form of a ttl: whole milliseconds, 0 for none. A negative one is
// refused here, since the C API's ttl_ms is unsigned.
inline std::uint64_t ttl_ms(std::chrono::milliseconds ttl, const char* call) {
  if (ttl.count() < 0) {
    throw Error(TETHER_INVALID_ARGUMENT, std::string(call) + ": a negative ttl (" +
                                             std::to_string(ttl.count()) + " ms)");
  }
  return static_cast<std::uint64_t>(ttl.count());
}

struct StringDeleter {
  void operator()(char* string) const noexcept { tether_free_string(string); }
};
using StringPtr = std::unique_ptr<char, StringDeleter>;

}  // namespace detail

// How a write is applied (tether_write_ex): where it goes, as in Options,
// and its conditions and expiry. The library refuses what does not go
// together (if_absent with if_version, either with queue, sliding without a
// ttl) with TETHER_INVALID_ARGUMENT.
struct WriteOptions {
  std::string backend{};
  std::string bucket{};
  bool queue = false;      // hand the write to the queue (no version is returned)
  bool if_absent = false;  // only where the key is absent, else TETHER_CONFLICT
  // Only where the key's version is this one: TETHER_CONFLICT for another,
  // TETHER_NOT_FOUND when the key is absent.
  std::optional<std::uint64_t> if_version{};
  // Above 0: the key is absent for every call from ttl after the write on.
  // 0: no expiry (an earlier one is cleared). TETHER_UNSUPPORTED on a
  // backend without expiry.
  std::chrono::milliseconds ttl{0};
  bool sliding = false;  // with a ttl: each read of the key restarts it
};

// Where a call goes, and how a write is applied. Empty strings mean the
// default backend and no bucket (the C API reads "" as it reads NULL). The
// `{}` initializers keep GCC's -Wmissing-field-initializers quiet when a
// designated initializer leaves a field out.
struct Options {
  std::string backend{};
  std::string bucket{};
  bool queue = false;  // write only: hand the write to the queue

  // Options where a write takes WriteOptions: the same backend, bucket and
  // queue, no condition, no expiry.
  operator WriteOptions() const { return WriteOptions{backend, bucket, queue}; }
};

// What a listing covers. page_size must be at least 1.
struct ListOptions {
  std::string backend{};
  std::string bucket{};
  std::string prefix{};  // only keys (without the bucket part) starting with it
  std::size_t page_size = 100;
};

// One page of a listing, copied out of the library's page.
struct Page {
  std::vector<std::pair<std::string, std::string>> entries;  // key, value
  std::optional<std::string> next;  // start_after of the next page; none on the last
};

// One page of a listing of keys alone (TETHER_KEYS_ONLY): the same keys, in
// the same pages, as a Page has, without their values.
struct KeyPage {
  std::vector<std::string> keys;
  std::optional<std::string> next;  // start_after of the next page; none on the last
};

// A value and its version (a non-zero number that grows at every change of
// the key's value).
struct Versioned {
  std::string value;
  std::uint64_t version = 0;
};

template <typename P>
class BasicPages;
using Pages = BasicPages<Page>;
using KeyPages = BasicPages<KeyPage>;

// A handle on the configured backends. Move-only; the destructor closes it
// (applying queued writes) and swallows any error: call close() to see it.
// One Db may be used by many threads at once, except close() and the
// destructor, which must not overlap another call.
class Db {
 public:
  // config_json: "" or "{}" opens the embedded default (local in
  // ./tetherdb_data).
  static Db open(const std::string& config_json = "") {
    tether_db* db = nullptr;
    detail::check(tether_open(config_json.c_str(), &db));
    return Db(db);
  }

  static Db open_file(const std::string& path) {
    tether_db* db = nullptr;
    detail::check(tether_open_file(path.c_str(), &db));
    return Db(db);
  }

  Db(Db&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Db& operator=(Db&& other) noexcept {
    if (this != &other) {
      tether_close(db_);  // errors swallowed, as in the destructor
      db_ = std::exchange(other.db_, nullptr);
    }
    return *this;
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() { tether_close(db_); }

  // Applies queued writes, stops the worker and frees the handle. The handle
  // is freed even when this throws; the Db is then empty.
  void close() { detail::check(tether_close(std::exchange(db_, nullptr))); }

  // Stores value under key (an Options converts to WriteOptions), and
  // returns the key's new version; std::nullopt for a queued write, which
  // returns once queued. A failed condition throws Error with status()
  // TETHER_CONFLICT (or TETHER_NOT_FOUND for if_version on an absent key)
  // and changes nothing.
  std::optional<std::uint64_t> write(const std::string& key, std::string_view value,
                                     const WriteOptions& opts = {}) {
    std::uint32_t flags = (opts.queue ? TETHER_QUEUE : 0u) |
                          (opts.if_absent ? TETHER_IF_ABSENT : 0u) |
                          (opts.if_version ? TETHER_IF_VERSION : 0u) |
                          (opts.sliding ? TETHER_SLIDING : 0u);
    std::uint64_t version = 0;
    detail::check(tether_write_ex(db_, opts.backend.c_str(), opts.bucket.c_str(), key.c_str(),
                                  detail::bytes(value), value.size(), flags,
                                  detail::ttl_ms(opts.ttl, "write"),
                                  opts.if_version.value_or(0), &version));
    if (opts.queue) return std::nullopt;
    return version;
  }

  // The value, or std::nullopt when the key is absent.
  std::optional<std::string> read(const std::string& key, const Options& opts = {}) const {
    std::uint8_t* value = nullptr;
    std::size_t len = 0;
    tether_status status = tether_read(db_, opts.backend.c_str(),
                                       opts.bucket.c_str(), key.c_str(), &value, &len);
    if (status == TETHER_NOT_FOUND) return std::nullopt;
    detail::check(status);
    // Owns the buffer before the copy, which may throw bad_alloc.
    auto free_value = [len](std::uint8_t* p) { tether_free(p, len); };
    std::unique_ptr<std::uint8_t, decltype(free_value)> owned(value, free_value);
    return std::string(reinterpret_cast<const char*>(owned.get()), len);
  }

  // The value and its version, or std::nullopt when the key is absent.
  std::optional<Versioned> read_versioned(const std::string& key, const Options& opts = {}) const {
    std::uint8_t* value = nullptr;
    std::size_t len = 0;
    std::uint64_t version = 0;
    tether_status status = tether_read_ex(db_, opts.backend.c_str(), opts.bucket.c_str(),
                                          key.c_str(), &value, &len, &version);
    if (status == TETHER_NOT_FOUND) return std::nullopt;
    detail::check(status);
    auto free_value = [len](std::uint8_t* p) { tether_free(p, len); };
    std::unique_ptr<std::uint8_t, decltype(free_value)> owned(value, free_value);
    return Versioned{std::string(reinterpret_cast<const char*>(owned.get()), len), version};
  }

  // The key's version, or std::nullopt when it is absent; no value is
  // copied.
  std::optional<std::uint64_t> key_version(const std::string& key, const Options& opts = {}) const {
    std::uint64_t version = 0;
    tether_status status = tether_read_ex(db_, opts.backend.c_str(), opts.bucket.c_str(),
                                          key.c_str(), nullptr, nullptr, &version);
    if (status == TETHER_NOT_FOUND) return std::nullopt;
    detail::check(status);
    return version;
  }

  // Whether the key is present (not expired); no value is copied.
  bool exists(const std::string& key, const Options& opts = {}) const {
    return key_version(key, opts).has_value();
  }

  // Replaces the value only where the key exists; false when it is absent.
  bool update(const std::string& key, std::string_view value, const Options& opts = {}) {
    return found(tether_update(db_, opts.backend.c_str(), opts.bucket.c_str(),
                               key.c_str(), detail::bytes(value), value.size()));
  }

  // Removes a key; false when there was nothing to remove.
  bool remove(const std::string& key, const Options& opts = {}) {
    return found(tether_delete(db_, opts.backend.c_str(), opts.bucket.c_str(),
                               key.c_str()));
  }

  // Removes a key only at this version: false when it is absent, Error with
  // status() TETHER_CONFLICT (the key untouched) at another version.
  bool remove_if_version(const std::string& key, std::uint64_t version, const Options& opts = {}) {
    return found(tether_delete_ex(db_, opts.backend.c_str(), opts.bucket.c_str(), key.c_str(),
                                  TETHER_IF_VERSION, version));
  }

  // Sets a present key's expiry to ttl from now (0: none), keeping its
  // value; a sliding key stops sliding. False when the key is absent.
  bool touch(const std::string& key, std::chrono::milliseconds ttl, const Options& opts = {}) {
    return found(tether_touch(db_, opts.backend.c_str(), opts.bucket.c_str(), key.c_str(),
                              detail::ttl_ms(ttl, "touch")));
  }

  // Adds delta to the counter under key, atomically, and returns its new
  // value. The counter is decimal text ("42"); an absent key counts from
  // 0; a value that is not a decimal 64-bit integer, or a sum beyond one,
  // throws Error with status() TETHER_CONFLICT and changes nothing. With
  // shards from 2 to TETHER_MAX_SHARDS the counter is split over the keys
  // KEY#shard0 ... KEY#shard<shards-1>, one of which, at random, gets
  // delta, and the value returned is their total, read after it (one read
  // per shard: add() skips it).
  std::int64_t increment(const std::string& key, std::int64_t delta = 1, std::uint32_t shards = 0,
                         const Options& opts = {}) {
    std::int64_t value = 0;
    detail::check(tether_increment(db_, opts.backend.c_str(), opts.bucket.c_str(), key.c_str(),
                                   delta, shards, &value));
    return value;
  }

  // increment() without reading the new value: for a sharded counter, no
  // read of every shard.
  void add(const std::string& key, std::int64_t delta, std::uint32_t shards = 0,
           const Options& opts = {}) {
    detail::check(tether_increment(db_, opts.backend.c_str(), opts.bucket.c_str(), key.c_str(),
                                   delta, shards, nullptr));
  }

  // The counter's value: the key's (shards 0 or 1), or the sum of its
  // shards; an absent key or shard counts 0.
  std::int64_t counter_total(const std::string& key, std::uint32_t shards = 0,
                             const Options& opts = {}) const {
    std::int64_t value = 0;
    detail::check(tether_counter_total(db_, opts.backend.c_str(), opts.bucket.c_str(),
                                       key.c_str(), shards, &value));
    return value;
  }

  // Deletes every key of opts.bucket starting with prefix and returns how
  // many. No bucket and an empty prefix is TETHER_INVALID_ARGUMENT: no call
  // deletes a whole store.
  std::uint64_t delete_prefix(const std::string& prefix, const Options& opts = {}) {
    std::uint64_t deleted = 0;
    detail::check(tether_delete_prefix(db_, opts.backend.c_str(), opts.bucket.c_str(),
                                       prefix.c_str(), &deleted));
    return deleted;
  }

  // One page: pass its `next` as start_after to get the following one.
  Page list(const ListOptions& opts = {},
            const std::optional<std::string>& start_after = std::nullopt) const {
    tether_page* raw = nullptr;
    detail::check(tether_list(db_, opts.backend.c_str(), opts.bucket.c_str(),
                              opts.prefix.c_str(),
                              start_after ? start_after->c_str() : nullptr, opts.page_size,
                              &raw));
    detail::PagePtr page(raw);
    Page out;
    std::size_t n = tether_page_len(page.get());
    out.entries.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t len = 0;
      const std::uint8_t* value = tether_page_value(page.get(), i, &len);
      out.entries.emplace_back(tether_page_key(page.get(), i),
                               std::string(reinterpret_cast<const char*>(value), len));
    }
    if (const char* next = tether_page_next(page.get())) out.next = next;
    return out;
  }

  // One page of keys alone (TETHER_KEYS_ONLY): the backend fetches no
  // values where it can avoid it.
  KeyPage list_keys(const ListOptions& opts = {},
                    const std::optional<std::string>& start_after = std::nullopt) const {
    tether_page* raw = nullptr;
    detail::check(tether_list_ex(db_, opts.backend.c_str(), opts.bucket.c_str(),
                                 opts.prefix.c_str(),
                                 start_after ? start_after->c_str() : nullptr, opts.page_size,
                                 TETHER_KEYS_ONLY, &raw));
    detail::PagePtr page(raw);
    KeyPage out;
    std::size_t n = tether_page_len(page.get());
    out.keys.reserve(n);
    for (std::size_t i = 0; i < n; ++i) out.keys.emplace_back(tether_page_key(page.get(), i));
    if (const char* next = tether_page_next(page.get())) out.next = next;
    return out;
  }

  // Every page of a listing, for range-for; an empty listing has no page.
  Pages pages(const ListOptions& opts = {}) const;
  // Every page of a listing of keys alone, for range-for.
  KeyPages key_pages(const ListOptions& opts = {}) const;

  // Waits until writes queued before it are applied and durable.
  void flush() { detail::check(tether_flush(db_)); }
  void start() { detail::check(tether_start(db_)); }
  // Applies every queued write, then stops the worker.
  void stop() { detail::check(tether_stop(db_)); }

  // What each backend's worker has done and what waits for it, as the JSON
  // text of tether_stats: {"running", "outbox", "backends": {name: {"queued",
  // "applied", "pending", ...}}}. Parse it with the JSON library of your choice.
  std::string stats() const {
    char* raw = nullptr;
    detail::check(tether_stats(db_, &raw));
    detail::StringPtr json(raw);  // owns it before the copy, which may throw
    return std::string(json.get());
  }

  // Copies the keys of `bucket` starting with `prefix` ("" for none) from
  // the backend `from` to the backend `to` of this handle, with their
  // remaining ttls (tether_copy). `flags`: 0, or TETHER_COPY_CHANGED,
  // TETHER_COPY_MIRROR and TETHER_COPY_DRY_RUN or-ed together. Returns the
  // report's JSON text: {"copied", "deleted", "unchanged", "keys"}.
  std::string copy(const std::string& from, const std::string& to, std::uint32_t flags = 0,
                   const std::string& bucket = "", const std::string& prefix = "") {
    char* raw = nullptr;
    detail::check(tether_copy(db_, from.c_str(), to.c_str(), bucket.c_str(), prefix.c_str(),
                              flags, &raw));
    detail::StringPtr json(raw);  // owns it before the copy, which may throw
    return std::string(json.get());
  }

  // The C handle, for calls this wrapper does not cover; still owned here.
  tether_db* get() const noexcept { return db_; }

 private:
  explicit Db(tether_db* db) noexcept : db_(db) {}

  static bool found(tether_status status) {
    if (status == TETHER_NOT_FOUND) return false;
    detail::check(status);
    return true;
  }

  tether_db* db_;
};

// The pages of a listing (Pages: Page; KeyPages: KeyPage), fetched one at a
// time as the loop advances.
template <typename P>
class BasicPages {
 public:
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = P;
    using difference_type = std::ptrdiff_t;
    using pointer = const P*;
    using reference = const P&;

    iterator() = default;  // the end
    reference operator*() const { return page_; }
    pointer operator->() const { return &page_; }
    iterator& operator++() {
      if (page_.next) {
        page_ = fetch(page_.next);
      } else {
        db_ = nullptr;
      }
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& a, const iterator& b) { return a.db_ == b.db_; }
    friend bool operator!=(const iterator& a, const iterator& b) { return !(a == b); }

   private:
    friend class BasicPages;
    iterator(const Db* db, const ListOptions* opts) : db_(db), opts_(opts) {
      page_ = fetch(std::nullopt);
      // Only the last page can be short, so only an empty listing has an empty page.
      if (empty()) db_ = nullptr;
    }
    P fetch(const std::optional<std::string>& start_after) const {
      if constexpr (std::is_same_v<P, KeyPage>) {
        return db_->list_keys(*opts_, start_after);
      } else {
        return db_->list(*opts_, start_after);
      }
    }
    bool empty() const {
      if constexpr (std::is_same_v<P, KeyPage>) {
        return page_.keys.empty();
      } else {
        return page_.entries.empty();
      }
    }
    const Db* db_ = nullptr;  // nullptr once past the last page
    const ListOptions* opts_ = nullptr;
    P page_;
  };

  BasicPages(const Db& db, ListOptions opts) : db_(&db), opts_(std::move(opts)) {}
  iterator begin() const { return iterator(db_, &opts_); }
  iterator end() const { return iterator(); }

 private:
  const Db* db_;
  ListOptions opts_;
};

inline Pages Db::pages(const ListOptions& opts) const { return Pages(*this, opts); }
inline KeyPages Db::key_pages(const ListOptions& opts) const { return KeyPages(*this, opts); }

// A random (version 4) UUID, e.g. "1b4e28ba-2fa1-4d2b-a83c-6a6f8e8f1a2b".
inline std::string uuid4() {
  std::random_device rd;
  std::array<std::uint8_t, 16> b{};
  for (std::size_t i = 0; i < b.size(); i += 4) {
    std::uint32_t r = rd();
    for (std::size_t j = 0; j < 4; ++j) b[i + j] = static_cast<std::uint8_t>(r >> (8 * j));
  }
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return out;
}

// The tether decorator of the Python TetherDB. Wraps `fn`, a callable whose
// result destructures into a key and a value (a std::pair<std::string,
// std::string>, a tuple, or a struct of two such members). Each call of the
// wrapper calls fn, fills an empty key with a UUID v4, writes the value with
// `opts` (queued when opts.queue; an Options converts) and returns fn's
// result with that key. The wrapper refers to `db`, which must outlive it.
template <typename Fn>
auto tether(Db& db, WriteOptions opts, Fn fn) {
  return [&db, opts = std::move(opts), fn = std::move(fn)](auto&&... args) mutable {
    auto result = std::invoke(fn, std::forward<decltype(args)>(args)...);
    auto& [key, value] = result;
    static_assert(std::is_same_v<std::decay_t<decltype(key)>, std::string>,
                  "the key a tethered function returns must be a std::string");
    if (key.empty()) key = uuid4();
    db.write(key, std::string_view(value), opts);
    return result;
  };
}

}  // namespace tetherdb

#endif  // TETHERDB_HPP
