// Tests of tetherdb.hpp. The core ones (BackendTest) run on the embedded
// `local` backend, in a fresh store under a temporary directory, and on the
// etcd named by TETHERDB_TEST_ETCD (127.0.0.1:PORT, which
// scripts/test_bindings.sh starts), each in buckets of its own since that
// etcd is shared; the others on `local` only. Built with ASan + UBSan: a
// buffer or page the wrapper fails to free fails the run at exit.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tetherdb.hpp"

namespace fs = std::filesystem;
using tetherdb::Db;
using tetherdb::Error;
using namespace std::chrono_literals;

namespace {

class DbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tetherdb-cpp-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A config with the store `store` in this test's directory; extra JSON
  // members (e.g. a queue_batch section) go after it.
  std::string config(const std::string& extra = "", const std::string& store = "data") const {
    std::string json = R"({"logging": "none", "local": {"filepath": ")" +
                       (dir_ / store).string() + "\"}";
    if (!extra.empty()) json += ", " + extra;
    return json + "}";
  }

  fs::path dir_;
};

// Whether s is a UUID v4 in its canonical form (std::regex trips GCC 12's
// -Wmaybe-uninitialized under ASan).
bool is_uuid4(const std::string& s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i])) || std::isupper(static_cast<unsigned char>(s[i])))
      return false;
  }
  return s[14] == '4' && std::string("89ab").find(s[19]) != std::string::npos;
}

// Runs `call`, which must throw tetherdb::Error, and returns it.
template <typename F>
Error error_of(F&& call) {
  try {
    call();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no tetherdb::Error thrown";
  return Error(TETHER_OK, "");
}

// An environment variable's value, or nullptr when it is unset or empty.
const char* env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

// The etcd of the tests, "127.0.0.1:PORT", or nullptr.
const char* etcd_endpoint() { return env("TETHERDB_TEST_ETCD"); }

// The core tests, once per backend: the backend is the handle's only one
// (so calls that name none go to it), and `bucket_` is this test's own.
class BackendTest : public DbTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    DbTest::SetUp();
    if (HasFatalFailure()) return;
    if (GetParam() == "etcd" && etcd_endpoint() == nullptr) {
      if (env("CI") != nullptr) {
        GTEST_FAIL() << "CI is set but TETHERDB_TEST_ETCD is not: run the tests with "
                        "scripts/test_bindings.sh, which starts etcd";
      }
      GTEST_SKIP() << "no etcd: set TETHERDB_TEST_ETCD=127.0.0.1:PORT, or run "
                      "scripts/test_bindings.sh, which starts one";
    }
    bucket_ = "cpp-" + tetherdb::uuid4();
  }

  // A config whose only backend is this test's, with these queue_batch
  // members. Without a local section the outbox would default to
  // ./tetherdb_data.outbox, shared by every test: on etcd it goes in this
  // test's directory.
  std::string backend_config(const std::string& queue_batch = "") const {
    if (GetParam() == "local") {
      return config(queue_batch.empty() ? "" : R"("queue_batch": {)" + queue_batch + "}");
    }
    std::string json = R"({"logging": "none", "etcd": {"endpoints": [")" +
                       std::string(etcd_endpoint()) + R"("]}, "queue_batch": {"outbox_path": ")" +
                       outbox_path().string() + "\"";
    if (!queue_batch.empty()) json += ", " + queue_batch;
    return json + "}}";
  }

  // Where the handles of backend_config() keep their outbox.
  fs::path outbox_path() const {
    return GetParam() == "local" ? dir_ / "data.outbox" : dir_ / "outbox";
  }

  std::string bucket_;
};

INSTANTIATE_TEST_SUITE_P(Backends, BackendTest, ::testing::Values("local", "etcd"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST_P(BackendTest, WriteReadUpdateRemove) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};
  db.write("k", "v1", in);
  EXPECT_EQ(db.read("k", in), "v1");
  db.write("k", "v1b", in);  // a write overwrites
  EXPECT_EQ(db.read("k", in), "v1b");
  EXPECT_TRUE(db.update("k", "v2", in));
  EXPECT_EQ(db.read("k", in), "v2");
  EXPECT_TRUE(db.remove("k", in));
  EXPECT_EQ(db.read("k", in), std::nullopt);
  EXPECT_FALSE(db.remove("k", in)) << "a second remove finds nothing";
  EXPECT_FALSE(db.update("k", "v3", in));
  EXPECT_EQ(db.read("k", in), std::nullopt) << "update must not create the key";
  EXPECT_FALSE(db.update("never", "v", in));
  EXPECT_TRUE(db.list({.bucket = bucket_}).entries.empty()) << "update must not create a key";
  db.close();
}

TEST_P(BackendTest, ValuesAreBytes) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};
  const std::string binary("a\0b\xff", 4);
  db.write("binary", binary, in);
  EXPECT_EQ(db.read("binary", in), binary);
  db.write("empty", "", in);
  EXPECT_EQ(db.read("empty", in), std::string());
}

TEST_P(BackendTest, BucketsSeparateKeys) {
  Db db = Db::open(backend_config());
  const std::string logs = bucket_, logs_x = bucket_ + "X";  // one the prefix of the other
  db.write("k", "in logs", {.bucket = logs});
  db.write("k", "in logsX", {.bucket = logs_x});
  EXPECT_EQ(db.read("k", {.bucket = logs}), "in logs");
  EXPECT_EQ(db.read("k", {.bucket = logs_x}), "in logsX");
  // The stored key is bucket:key, the Python TetherDB's scheme.
  EXPECT_EQ(db.read(logs + ":k"), "in logs");
  // A bucket's listing holds its keys only, not those of a bucket its name prefixes.
  tetherdb::Page page = db.list({.bucket = logs});
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(page.entries[0], std::make_pair(std::string("k"), std::string("in logs")));
  EXPECT_FALSE(page.next.has_value());
  EXPECT_EQ(db.list({.bucket = logs_x}).entries.size(), 1u);
}

TEST_P(BackendTest, ListPagesInKeyOrder) {
  Db db = Db::open(backend_config());
  const std::string b = bucket_;
  for (int i = 0; i < 7; ++i) db.write("k" + std::to_string(i), "v" + std::to_string(i), {.bucket = b});
  db.write("other", "x", {.bucket = b + "X"});  // another bucket, never listed

  tetherdb::Page first = db.list({.bucket = b, .page_size = 3});
  ASSERT_EQ(first.entries.size(), 3u);
  EXPECT_EQ(first.entries[0], std::make_pair(std::string("k0"), std::string("v0")));
  EXPECT_EQ(first.next, "k2");

  std::vector<std::string> keys;
  std::vector<std::size_t> sizes;
  for (const tetherdb::Page& page : db.pages({.bucket = b, .page_size = 3})) {
    sizes.push_back(page.entries.size());
    for (const auto& [key, value] : page.entries) keys.push_back(key);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{3, 3, 1}));
  EXPECT_EQ(keys, (std::vector<std::string>{"k0", "k1", "k2", "k3", "k4", "k5", "k6"}));

  // The next marker is absent exactly on the last page, also when that page is full.
  tetherdb::Page all = db.list({.bucket = b, .page_size = 7});
  EXPECT_EQ(all.entries.size(), 7u);
  EXPECT_FALSE(all.next.has_value());
  tetherdb::Page six = db.list({.bucket = b, .page_size = 6});
  EXPECT_EQ(six.next, "k5");
  tetherdb::Page rest = db.list({.bucket = b, .page_size = 6}, six.next);
  ASSERT_EQ(rest.entries.size(), 1u);
  EXPECT_EQ(rest.entries[0].first, "k6");
  EXPECT_FALSE(rest.next.has_value());
  sizes.clear();
  for (const auto& page : db.pages({.bucket = b, .page_size = 7})) sizes.push_back(page.entries.size());
  EXPECT_EQ(sizes, (std::vector<std::size_t>{7})) << "no empty page after a full last one";

  tetherdb::Page prefixed = db.list({.bucket = b, .prefix = "k5"});
  ASSERT_EQ(prefixed.entries.size(), 1u);
  EXPECT_EQ(prefixed.entries[0].second, "v5");
  EXPECT_FALSE(prefixed.next.has_value());
}

TEST_P(BackendTest, EmptyListingHasNoPage) {
  Db db = Db::open(backend_config());
  EXPECT_TRUE(db.list({.bucket = bucket_}).entries.empty());
  EXPECT_FALSE(db.list({.bucket = bucket_}).next.has_value());
  int pages = 0;
  for (const auto& page : db.pages({.bucket = bucket_})) pages += page.entries.empty() ? 100 : 1;
  EXPECT_EQ(pages, 0);
}

TEST_P(BackendTest, QueuedWritesAndWorker) {
  Db db = Db::open(backend_config(R"("autostart": false, "interval": 60)"));
  const tetherdb::Options in{.bucket = bucket_}, queued{.bucket = bucket_, .queue = true};
  Error stopped = error_of([&] { db.write("q", "v", queued); });
  EXPECT_EQ(stopped.status(), TETHER_NOT_RUNNING);

  db.start();
  db.start();  // idempotent
  db.write("q", "v", queued);
  db.flush();  // does not wait for the 60 s interval
  EXPECT_EQ(db.read("q", in), "v");

  db.write("q2", "v2", queued);
  db.stop();  // applies what is queued
  db.stop();
  EXPECT_EQ(db.read("q2", in), "v2");
  EXPECT_EQ(error_of([&] { db.write("q3", "v", queued); }).status(), TETHER_NOT_RUNNING);
  EXPECT_EQ(db.read("q3", in), std::nullopt);
}

TEST_P(BackendTest, CloseAppliesQueuedWrites) {
  {
    Db db = Db::open(backend_config(R"("interval": 60)"));
    db.write("q", "v", {.bucket = bucket_, .queue = true});
  }  // the destructor closes: applies the write (and releases sled's lock)
  Db db = Db::open(backend_config());
  EXPECT_EQ(db.read("q", {.bucket = bucket_}), "v");
  db.close();
  // A closed (empty) Db fails cleanly instead of touching freed memory.
  EXPECT_EQ(error_of([&] { db.read("q"); }).status(), TETHER_INVALID_ARGUMENT);
  db.close();  // closing an empty Db is a no-op
}

TEST_P(BackendTest, TetherWritesAndReturnsTheResult) {
  Db db = Db::open(backend_config());
  const tetherdb::Options logs{.bucket = bucket_};
  auto log = tetherdb::tether(db, logs, [](int n) {
    return std::pair<std::string, std::string>("entry", "n=" + std::to_string(n));
  });
  auto [key, value] = log(7);
  EXPECT_EQ(key, "entry");
  EXPECT_EQ(value, "n=7");
  EXPECT_EQ(db.read("entry", logs), "n=7");

  // An empty key gets a fresh UUID v4, returned to the caller.
  struct Record {
    std::string key;
    std::string value;
  };
  auto anonymous = tetherdb::tether(db, logs, [] { return Record{"", "anon"}; });
  Record r1 = anonymous();
  Record r2 = anonymous();
  EXPECT_TRUE(is_uuid4(r1.key)) << r1.key;
  EXPECT_NE(r1.key, r2.key);
  EXPECT_EQ(db.read(r1.key, logs), "anon");
  EXPECT_EQ(db.read(r2.key, logs), "anon");
}

TEST_P(BackendTest, TetherQueues) {
  Db db = Db::open(backend_config(R"("interval": 60)"));
  auto queued = tetherdb::tether(db, {.bucket = bucket_, .queue = true},
                                 [] { return std::tuple<std::string, std::string>("k", "v"); });
  queued();
  db.flush();
  EXPECT_EQ(db.read("k", {.bucket = bucket_}), "v");

  db.stop();
  EXPECT_EQ(error_of([&] { queued(); }).status(), TETHER_NOT_RUNNING);
}

// stats() is the JSON text of tether_stats: this handle's counts, per backend.
TEST_P(BackendTest, Stats) {
  Db db = Db::open(backend_config(R"("interval": 60)"));
  auto has = [](const std::string& json, const std::string& part) {
    return json.find(part) != std::string::npos;
  };
  std::string fresh = db.stats();
  EXPECT_TRUE(has(fresh, R"("running":true)")) << fresh;
  EXPECT_TRUE(has(fresh, "\"" + GetParam() + R"(":{)")) << fresh;
  EXPECT_TRUE(has(fresh, R"("queued":0)")) << fresh;

  const tetherdb::Options queued{.bucket = bucket_, .queue = true};
  for (const char* key : {"a", "b", "c"}) db.write(key, "v", queued);
  db.flush();
  std::string json = db.stats();
  ASSERT_FALSE(json.empty());
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
  for (const char* part : {R"("queued":3)", R"("applied":3)", R"("pending":0)", R"("failed":0)",
                           R"("last_error":null)", R"("outbox":{)"}) {
    EXPECT_TRUE(has(json, part)) << part << " not in " << json;
  }
  EXPECT_TRUE(has(json, R"("path":")" + outbox_path().string() + "\"")) << json;
  EXPECT_TRUE(fs::is_directory(outbox_path())) << outbox_path();

  db.stop();
  EXPECT_TRUE(has(db.stats(), R"("running":false)"));
  db.close();
  // A closed (empty) Db fails cleanly.
  EXPECT_EQ(error_of([&] { db.stats(); }).status(), TETHER_INVALID_ARGUMENT);
}

// Polls until done() holds, for at most 30 s, and says whether it did: a
// bound for a key's expiry to show, never a time it must show within.
template <typename F>
bool eventually(F&& done) {
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (!done()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

TEST_P(BackendTest, VersionsAndConditionalWrites) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};
  std::optional<std::uint64_t> v1 = db.write("k", "v1", in);
  ASSERT_TRUE(v1.has_value());
  EXPECT_NE(*v1, 0u);
  std::optional<tetherdb::Versioned> read = db.read_versioned("k", in);
  ASSERT_TRUE(read.has_value());
  EXPECT_EQ(read->value, "v1");
  EXPECT_EQ(read->version, *v1);
  EXPECT_EQ(db.key_version("k", in), v1);
  EXPECT_TRUE(db.exists("k", in));
  EXPECT_FALSE(db.read_versioned("absent", in).has_value());
  EXPECT_EQ(db.key_version("absent", in), std::nullopt);
  EXPECT_FALSE(db.exists("absent", in));

  // if_version: written at that version only.
  std::optional<std::uint64_t> v2 = db.write("k", "v2", {.bucket = bucket_, .if_version = *v1});
  ASSERT_TRUE(v2.has_value());
  EXPECT_GT(*v2, *v1);
  Error stale = error_of([&] { db.write("k", "v3", {.bucket = bucket_, .if_version = *v1}); });
  EXPECT_EQ(stale.status(), TETHER_CONFLICT) << stale.what();
  EXPECT_EQ(db.read("k", in), "v2") << "a failed condition changes nothing";
  EXPECT_EQ(db.key_version("k", in), v2);
  Error absent = error_of([&] { db.write("never", "v", {.bucket = bucket_, .if_version = *v2}); });
  EXPECT_EQ(absent.status(), TETHER_NOT_FOUND) << absent.what();
  EXPECT_FALSE(db.exists("never", in));

  // if_absent: written where the key is absent only.
  Error present = error_of([&] { db.write("k", "v3", {.bucket = bucket_, .if_absent = true}); });
  EXPECT_EQ(present.status(), TETHER_CONFLICT) << present.what();
  EXPECT_EQ(db.read("k", in), "v2");
  std::optional<std::uint64_t> created = db.write("new", "n", {.bucket = bucket_, .if_absent = true});
  ASSERT_TRUE(created.has_value());
  EXPECT_EQ(db.key_version("new", in), created);

  // What does not go together is the library's to refuse.
  for (const tetherdb::WriteOptions& both :
       {tetherdb::WriteOptions{.bucket = bucket_, .if_absent = true, .if_version = *v2},
        tetherdb::WriteOptions{.bucket = bucket_, .queue = true, .if_absent = true},
        tetherdb::WriteOptions{.bucket = bucket_, .queue = true, .if_version = *v2}}) {
    EXPECT_EQ(error_of([&] { db.write("k", "x", both); }).status(), TETHER_INVALID_ARGUMENT);
  }
  EXPECT_EQ(db.read("k", in), "v2");

  // A version grows across a delete and a new write of the key.
  EXPECT_TRUE(db.remove("k", in));
  std::optional<std::uint64_t> v3 = db.write("k", "again", in);
  ASSERT_TRUE(v3.has_value());
  EXPECT_GT(*v3, *v2);

  // A queued write returns before it has a version.
  EXPECT_EQ(db.write("q", "v", {.bucket = bucket_, .queue = true}), std::nullopt);
  db.flush();
  EXPECT_TRUE(db.exists("q", in));
}

TEST_P(BackendTest, RemoveIfVersion) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};
  const std::uint64_t v1 = db.write("k", "v1", in).value();
  const std::uint64_t v2 = db.write("k", "v2", in).value();
  Error stale = error_of([&] { db.remove_if_version("k", v1, in); });
  EXPECT_EQ(stale.status(), TETHER_CONFLICT) << stale.what();
  EXPECT_EQ(db.read("k", in), "v2") << "a failed condition changes nothing";
  EXPECT_TRUE(db.remove_if_version("k", v2, in));
  EXPECT_FALSE(db.exists("k", in));
  EXPECT_FALSE(db.remove_if_version("k", v2, in)) << "the key is absent";
}

TEST_P(BackendTest, ExpiryAndTouch) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};

  db.write("short", "v", {.bucket = bucket_, .ttl = 50ms});
  EXPECT_TRUE(eventually([&] { return !db.read("short", in).has_value(); }))
      << "a key with a ttl of 50 ms still there after 30 s";
  EXPECT_FALSE(db.exists("short", in));
  EXPECT_FALSE(db.touch("short", 1h, in)) << "an expired key is absent";
  EXPECT_TRUE(db.write("short", "again", {.bucket = bucket_, .if_absent = true}).has_value())
      << "an expired key is absent for conditions too";

  db.write("long", "v", {.bucket = bucket_, .ttl = 1h});
  EXPECT_EQ(db.read("long", in), "v");
  EXPECT_TRUE(db.touch("long", 50ms, in));
  EXPECT_TRUE(eventually([&] { return !db.exists("long", in); }))
      << "a key touched to 50 ms still there after 30 s";

  // A queued write carries its ttl; touch(0) clears a ttl.
  EXPECT_EQ(db.write("queued", "v", {.bucket = bucket_, .queue = true, .ttl = 1h}), std::nullopt);
  db.flush();
  EXPECT_TRUE(db.touch("queued", 0ms, in));
  EXPECT_EQ(db.read("queued", in), "v");

  // sliding needs a ttl; the library refuses it without one.
  db.write("sliding", "v", {.bucket = bucket_, .ttl = 1h, .sliding = true});
  EXPECT_EQ(db.read("sliding", in), "v");
  EXPECT_EQ(error_of([&] { db.write("k", "v", {.bucket = bucket_, .sliding = true}); }).status(),
            TETHER_INVALID_ARGUMENT);
  EXPECT_FALSE(db.exists("k", in));

  EXPECT_FALSE(db.touch("never", 1h, in));
  Error negative = error_of([&] { db.write("k", "v", {.bucket = bucket_, .ttl = -1ms}); });
  EXPECT_EQ(negative.status(), TETHER_INVALID_ARGUMENT);
  EXPECT_NE(std::string(negative.what()).find("negative ttl"), std::string::npos) << negative.what();
  EXPECT_EQ(error_of([&] { db.touch("sliding", -1ms, in); }).status(), TETHER_INVALID_ARGUMENT);
}

TEST_P(BackendTest, Counters) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};
  EXPECT_EQ(db.increment("c", 1, 0, in), 1) << "an absent key counts from 0";
  EXPECT_EQ(db.increment("c", 41, 0, in), 42);
  EXPECT_EQ(db.read("c", in), "42") << "stored as decimal text";
  EXPECT_EQ(db.increment("c", -50, 0, in), -8);
  EXPECT_EQ(db.counter_total("c", 0, in), -8);
  db.add("c", 8, 0, in);
  EXPECT_EQ(db.read("c", in), "0");
  EXPECT_EQ(db.counter_total("absent", 0, in), 0);
  EXPECT_FALSE(db.exists("absent", in)) << "a total writes nothing";
  const std::string plain = bucket_ + "-plain";  // no bucket: delta 1 and shards 0 by default
  EXPECT_EQ(db.increment(plain), 1);
  EXPECT_EQ(db.increment(plain), 2);
  EXPECT_TRUE(db.remove(plain));

  // A value that is no counter, or a sum beyond 64 bits: a conflict, and
  // nothing changes.
  db.write("text", "hello", in);
  Error text = error_of([&] { db.increment("text", 1, 0, in); });
  EXPECT_EQ(text.status(), TETHER_CONFLICT) << text.what();
  EXPECT_EQ(db.read("text", in), "hello");
  EXPECT_EQ(error_of([&] { db.counter_total("text", 0, in); }).status(), TETHER_CONFLICT);
  const std::string max = std::to_string(std::numeric_limits<std::int64_t>::max());
  db.write("max", max, in);
  EXPECT_EQ(error_of([&] { db.increment("max", 1, 0, in); }).status(), TETHER_CONFLICT);
  EXPECT_EQ(db.read("max", in), max);
}

TEST_P(BackendTest, ShardedCounters) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};
  for (int i = 0; i < 20; ++i) db.add("hits", 1, 4, in);
  EXPECT_EQ(db.counter_total("hits", 4, in), 20);
  EXPECT_EQ(db.increment("hits", 5, 4, in), 25) << "the total after the increment";
  EXPECT_FALSE(db.exists("hits", in)) << "a sharded counter never writes its key";
  // The shards are ordinary keys of the bucket, hits#shard0 to hits#shard3.
  const std::set<std::string> names{"hits#shard0", "hits#shard1", "hits#shard2", "hits#shard3"};
  std::int64_t sum = 0;
  for (const tetherdb::KeyPage& page : db.key_pages({.bucket = bucket_, .prefix = "hits"})) {
    for (const std::string& key : page.keys) {
      EXPECT_EQ(names.count(key), 1u) << key;
      sum += std::stoll(db.read(key, in).value());
    }
  }
  EXPECT_EQ(sum, 25);
  Error over = error_of([&] { db.increment("hits", 1, TETHER_MAX_SHARDS + 1, in); });
  EXPECT_EQ(over.status(), TETHER_INVALID_ARGUMENT) << over.what();
}

// Threads incrementing one counter through one handle: each increment
// counts once.
TEST_P(BackendTest, IncrementsFromThreadsCountOnce) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_};
  constexpr int kThreads = 4, kIncrements = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIncrements; ++i) {
        try {
          db.add("hot", 1, 0, in);
          db.add("sharded", 1, 8, in);
        } catch (const Error& e) {
          ADD_FAILURE() << e.what();
          ++failures;
          return;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_EQ(db.counter_total("hot", 0, in), kThreads * kIncrements);
  EXPECT_EQ(db.counter_total("sharded", 8, in), kThreads * kIncrements);
}

TEST_P(BackendTest, ListKeysAndDeletePrefix) {
  Db db = Db::open(backend_config());
  const tetherdb::Options in{.bucket = bucket_}, other{.bucket = bucket_ + "X"};
  for (const char* key : {"a1", "a2", "a3", "b1"}) db.write(key, std::string("value of ") + key, in);
  db.write("a9", "v", other);  // another bucket, which its name prefixes

  tetherdb::KeyPage first = db.list_keys({.bucket = bucket_, .page_size = 2});
  EXPECT_EQ(first.keys, (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(first.next, "a2");
  tetherdb::KeyPage second = db.list_keys({.bucket = bucket_, .page_size = 2}, first.next);
  EXPECT_EQ(second.keys, (std::vector<std::string>{"a3", "b1"}));
  EXPECT_FALSE(second.next.has_value());

  std::vector<std::string> keys;
  std::vector<std::size_t> sizes;
  for (const tetherdb::KeyPage& page : db.key_pages({.bucket = bucket_, .page_size = 3})) {
    sizes.push_back(page.keys.size());
    keys.insert(keys.end(), page.keys.begin(), page.keys.end());
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{3, 1}));
  EXPECT_EQ(keys, (std::vector<std::string>{"a1", "a2", "a3", "b1"}));
  EXPECT_EQ(db.list_keys({.bucket = bucket_, .prefix = "a"}).keys.size(), 3u);
  int pages = 0;
  for (const auto& page : db.key_pages({.bucket = bucket_ + "-empty"})) pages += 1 + static_cast<int>(page.keys.size());
  EXPECT_EQ(pages, 0) << "an empty listing has no page";

  EXPECT_EQ(db.delete_prefix("a", in), 3u);
  EXPECT_EQ(db.list_keys({.bucket = bucket_}).keys, (std::vector<std::string>{"b1"}));
  EXPECT_EQ(db.read("a9", other), "v") << "another bucket is untouched";
  EXPECT_EQ(db.delete_prefix("a", in), 0u);
  EXPECT_EQ(db.delete_prefix("", in), 1u) << "an empty prefix: the whole bucket";
  EXPECT_TRUE(db.list_keys({.bucket = bucket_}).keys.empty());
  Error everything = error_of([&] { db.delete_prefix(""); });
  EXPECT_EQ(everything.status(), TETHER_INVALID_ARGUMENT) << everything.what();
  EXPECT_EQ(db.read("a9", other), "v");
  EXPECT_EQ(db.delete_prefix("", other), 1u);
}

// copy() returns tether_copy's report as JSON text; a dry run writes
// nothing, TETHER_COPY_CHANGED only what differs, and errors carry the status.
TEST_F(DbTest, CopyBetweenNamedBackends) {
  Db db = Db::open(R"({"logging": "none", "default_backend": "one", "backends": {)"
                   R"("one": {"engine": "local", "filepath": ")" + (dir_ / "one").string() + R"("},)"
                   R"("two": {"engine": "local", "filepath": ")" + (dir_ / "two").string() + R"("}}})");
  db.write("a", "1", {.bucket = "b"});
  db.write("b", "2", {.bucket = "b"});
  EXPECT_EQ(db.copy("one", "two", TETHER_COPY_DRY_RUN, "b"),
            R"({"copied":2,"deleted":0,"unchanged":0,"keys":["a","b"]})");
  EXPECT_EQ(db.read("a", {.backend = "two", .bucket = "b"}), std::nullopt);
  EXPECT_EQ(db.copy("one", "two", 0, "b", "a"),
            R"({"copied":1,"deleted":0,"unchanged":0,"keys":["a"]})");
  EXPECT_EQ(db.copy("one", "two", TETHER_COPY_CHANGED, "b"),
            R"({"copied":1,"deleted":0,"unchanged":1,"keys":["b"]})");
  EXPECT_EQ(db.read("b", {.backend = "two", .bucket = "b"}), "2");
  EXPECT_EQ(error_of([&] { db.copy("one", "one"); }).status(), TETHER_INVALID_ARGUMENT);
  EXPECT_EQ(error_of([&] { db.copy("one", "nosuch"); }).status(), TETHER_UNKNOWN_BACKEND);
}

// Nothing listens on port 1: the call fails at once, with TETHER_UNAVAILABLE
// (a handle opens while its server is down; it connects on first use).
TEST_F(DbTest, UnreachableEtcdIsUnavailable) {
  Db db = Db::open(R"({"logging": "none", "etcd": {"endpoints": ["127.0.0.1:1"], "timeout": 1},)"
                   R"( "queue_batch": {"outbox_path": ")" + (dir_ / "outbox").string() + "\"}}");
  auto started = std::chrono::steady_clock::now();
  Error write = error_of([&] { db.write("k", "v", {.backend = "etcd"}); });
  EXPECT_EQ(write.status(), TETHER_UNAVAILABLE) << write.what();
  EXPECT_NE(std::string(write.what()).find("etcd"), std::string::npos) << write.what();
  Error read = error_of([&] { db.read("k"); });  // not std::nullopt: nothing is known
  EXPECT_EQ(read.status(), TETHER_UNAVAILABLE) << read.what();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  db.close();
}

// A backend the configuration has no section for is unknown, as is one it
// never heard of.
TEST_F(DbTest, BackendNotConfiguredIsUnknown) {
  Db db = Db::open(config());
  for (const std::string backend : {"etcd", "nosuch"}) {
    Error e = error_of([&] { db.write("k", "v", {.backend = backend}); });
    EXPECT_EQ(e.status(), TETHER_UNKNOWN_BACKEND) << e.what();
    EXPECT_NE(std::string(e.what()).find(backend), std::string::npos) << e.what();
  }
}

TEST_F(DbTest, ErrorsCarryStatusAndMessage) {
  Db db = Db::open(config());
  Error bad_bucket = error_of([&] { db.write("k", "v", {.bucket = "a:b"}); });
  EXPECT_EQ(bad_bucket.status(), TETHER_INVALID_ARGUMENT);
  EXPECT_NE(std::string(bad_bucket.what()).find("TETHER_INVALID_ARGUMENT: "), std::string::npos);

  Error empty_key = error_of([&] { db.read(""); });
  EXPECT_EQ(empty_key.status(), TETHER_INVALID_ARGUMENT);

  Error backend = error_of([&] { db.write("k", "v", {.backend = "nosuch"}); });
  EXPECT_EQ(backend.status(), TETHER_UNKNOWN_BACKEND);
  EXPECT_NE(std::string(backend.what()).find("nosuch"), std::string::npos) << backend.what();

  Error page_size = error_of([&] { db.list({.page_size = 0}); });
  EXPECT_EQ(page_size.status(), TETHER_INVALID_ARGUMENT);

  Error config = error_of([] { Db::open(R"({"no_such_key": 1})"); });
  EXPECT_EQ(config.status(), TETHER_CONFIG);
  EXPECT_NE(std::string(config.what()).find("no_such_key"), std::string::npos) << config.what();

  Error file = error_of([&] { Db::open_file((dir_ / "absent.json").string()); });
  EXPECT_EQ(file.status(), TETHER_CONFIG);
}

TEST_F(DbTest, OpenFile) {
  std::string path = (dir_ / "config.json").string();
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(config().c_str(), f);
  std::fclose(f);
  Db db = Db::open_file(path);
  db.write("k", "v");
  EXPECT_EQ(db.read("k"), "v");
}

TEST_F(DbTest, MoveTransfersTheHandle) {
  Db a = Db::open(config());
  a.write("k", "v");
  Db b = std::move(a);
  EXPECT_EQ(b.read("k"), "v");
  EXPECT_EQ(a.get(), nullptr);  // NOLINT(bugprone-use-after-move): checked on purpose
  Db c = Db::open(config("", "other"));
  c = std::move(b);  // closes c's own store first
  EXPECT_EQ(c.read("k"), "v");
}

TEST_F(DbTest, ThreadsShareAHandleAndKeepTheirOwnErrors) {
  Db db = Db::open(config());
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        std::string key = "t" + std::to_string(t) + "-" + std::to_string(i);
        db.write(key, key);
        // Each thread's message names its own unknown backend.
        try {
          db.write(key, "x", {.backend = "nosuch-" + key});
          ++mismatches;
        } catch (const Error& e) {
          if (std::string(e.what()).find("nosuch-" + key) == std::string::npos) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  int count = 0;
  for (const auto& page : db.pages({.page_size = 64})) count += static_cast<int>(page.entries.size());
  EXPECT_EQ(count, kThreads * 50);
}

TEST(Uuid4, FormatAndVersion) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    std::string id = tetherdb::uuid4();
    EXPECT_TRUE(is_uuid4(id)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 100u);
}

}  // namespace
