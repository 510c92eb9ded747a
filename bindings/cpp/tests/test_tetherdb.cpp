// Tests of tetherdb.hpp on the embedded `local` backend, each in a fresh
// store under a temporary directory. Built with ASan + UBSan: a buffer or
// page the wrapper fails to free fails the run at exit.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
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

TEST_F(DbTest, WriteReadUpdateRemove) {
  Db db = Db::open(config());
  db.write("k", "v1");
  EXPECT_EQ(db.read("k"), "v1");
  EXPECT_TRUE(db.update("k", "v2"));
  EXPECT_EQ(db.read("k"), "v2");
  EXPECT_TRUE(db.remove("k"));
  EXPECT_EQ(db.read("k"), std::nullopt);
  EXPECT_FALSE(db.remove("k"));
  EXPECT_FALSE(db.update("k", "v3"));
  EXPECT_EQ(db.read("k"), std::nullopt) << "update must not create the key";
  db.close();
}

TEST_F(DbTest, ValuesAreBytes) {
  Db db = Db::open(config());
  const std::string binary("a\0b\xff", 4);
  db.write("binary", binary);
  EXPECT_EQ(db.read("binary"), binary);
  db.write("empty", "");
  EXPECT_EQ(db.read("empty"), std::string());
}

TEST_F(DbTest, BucketsSeparateKeys) {
  Db db = Db::open(config());
  db.write("k", "in logs", {.bucket = "logs"});
  db.write("k", "no bucket");
  EXPECT_EQ(db.read("k", {.bucket = "logs"}), "in logs");
  EXPECT_EQ(db.read("k"), "no bucket");
  // The stored key is bucket:key, the Python TetherDB's scheme.
  EXPECT_EQ(db.read("logs:k"), "in logs");
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

TEST_F(DbTest, ListPagesInKeyOrder) {
  Db db = Db::open(config());
  for (int i = 0; i < 7; ++i) db.write("k" + std::to_string(i), "v" + std::to_string(i), {.bucket = "b"});
  db.write("other", "x", {.bucket = "bX"});  // another bucket, never listed

  tetherdb::Page first = db.list({.bucket = "b", .page_size = 3});
  ASSERT_EQ(first.entries.size(), 3u);
  EXPECT_EQ(first.entries[0], std::make_pair(std::string("k0"), std::string("v0")));
  ASSERT_TRUE(first.next.has_value());

  std::vector<std::string> keys;
  std::vector<std::size_t> sizes;
  for (const tetherdb::Page& page : db.pages({.bucket = "b", .page_size = 3})) {
    sizes.push_back(page.entries.size());
    for (const auto& [key, value] : page.entries) keys.push_back(key);
  }
  EXPECT_EQ(sizes, (std::vector<std::size_t>{3, 3, 1}));
  EXPECT_EQ(keys, (std::vector<std::string>{"k0", "k1", "k2", "k3", "k4", "k5", "k6"}));

  tetherdb::Page prefixed = db.list({.bucket = "b", .prefix = "k5"});
  ASSERT_EQ(prefixed.entries.size(), 1u);
  EXPECT_EQ(prefixed.entries[0].second, "v5");
  EXPECT_FALSE(prefixed.next.has_value());
}

TEST_F(DbTest, EmptyListingHasNoPage) {
  Db db = Db::open(config());
  EXPECT_TRUE(db.list({.bucket = "none"}).entries.empty());
  int pages = 0;
  for (const auto& page : db.pages({.bucket = "none"})) pages += page.entries.empty() ? 100 : 1;
  EXPECT_EQ(pages, 0);
}

TEST_F(DbTest, QueuedWritesAndWorker) {
  Db db = Db::open(config(R"("queue_batch": {"autostart": false, "interval": 60})"));
  Error stopped = error_of([&] { db.write("q", "v", {.queue = true}); });
  EXPECT_EQ(stopped.status(), TETHER_NOT_RUNNING);

  db.start();
  db.start();  // idempotent
  db.write("q", "v", {.queue = true});
  db.flush();  // does not wait for the 60 s interval
  EXPECT_EQ(db.read("q"), "v");

  db.write("q2", "v2", {.queue = true});
  db.stop();  // applies what is queued
  db.stop();
  EXPECT_EQ(db.read("q2"), "v2");
  EXPECT_EQ(error_of([&] { db.write("q3", "v", {.queue = true}); }).status(),
            TETHER_NOT_RUNNING);
}

TEST_F(DbTest, CloseAppliesQueuedWritesAndReleasesTheStore) {
  {
    Db db = Db::open(config(R"("queue_batch": {"interval": 60})"));
    db.write("q", "v", {.queue = true});
  }  // the destructor closes: applies the write and releases sled's lock
  Db db = Db::open(config());
  EXPECT_EQ(db.read("q"), "v");
  db.close();
  // A closed (empty) Db fails cleanly instead of touching freed memory.
  EXPECT_EQ(error_of([&] { db.read("q"); }).status(), TETHER_INVALID_ARGUMENT);
  db.close();  // closing an empty Db is a no-op
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

TEST_F(DbTest, TetherWritesAndReturnsTheResult) {
  Db db = Db::open(config());
  auto log = tetherdb::tether(db, {.bucket = "logs"}, [](int n) {
    return std::pair<std::string, std::string>("entry", "n=" + std::to_string(n));
  });
  auto [key, value] = log(7);
  EXPECT_EQ(key, "entry");
  EXPECT_EQ(value, "n=7");
  EXPECT_EQ(db.read("entry", {.bucket = "logs"}), "n=7");

  // An empty key gets a fresh UUID v4, returned to the caller.
  struct Record {
    std::string key;
    std::string value;
  };
  auto anonymous = tetherdb::tether(db, {.bucket = "logs"}, [] { return Record{"", "anon"}; });
  Record r1 = anonymous();
  Record r2 = anonymous();
  EXPECT_TRUE(is_uuid4(r1.key)) << r1.key;
  EXPECT_NE(r1.key, r2.key);
  EXPECT_EQ(db.read(r1.key, {.bucket = "logs"}), "anon");
}

TEST_F(DbTest, TetherQueues) {
  Db db = Db::open(config(R"("queue_batch": {"interval": 60})"));
  auto queued = tetherdb::tether(db, {.queue = true}, [] { return std::tuple<std::string, std::string>("k", "v"); });
  queued();
  db.flush();
  EXPECT_EQ(db.read("k"), "v");

  db.stop();
  EXPECT_EQ(error_of([&] { queued(); }).status(), TETHER_NOT_RUNNING);
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
