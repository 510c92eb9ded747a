// tetherdb.hpp in a C++17 program (built with -std=c++17 -Wpedantic
// -Werror): no designated initializers, Options set field by field.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "tetherdb.hpp"

namespace fs = std::filesystem;

TEST(Cxx17, WriteQueueTetherReadList) {
  std::string tmpl = (fs::temp_directory_path() / "tetherdb-cpp17-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  fs::path dir = tmpl;
  {
    tetherdb::Db db = tetherdb::Db::open(R"({"logging": "none", "local": {"filepath": ")" +
                                         (dir / "data").string() + "\"}}");
    tetherdb::Options opts;
    opts.bucket = "b";
    db.write("direct", "1", opts);

    opts.queue = true;
    auto tethered = tetherdb::tether(db, opts, [] { return std::make_pair(std::string(), std::string("2")); });
    auto [key, value] = tethered();
    db.flush();
    opts.queue = false;
    EXPECT_EQ(db.read(key, opts), value);

    tetherdb::ListOptions list;
    list.bucket = "b";
    list.page_size = 1;
    std::size_t entries = 0;
    for (const auto& page : db.pages(list)) entries += page.entries.size();
    EXPECT_EQ(entries, 2u);
    std::string stats = db.stats();
    EXPECT_NE(stats.find("\"applied\":1"), std::string::npos) << stats;

    // WriteOptions, field by field: a version, a condition, a ttl.
    tetherdb::WriteOptions write;
    write.bucket = "b";
    std::optional<std::uint64_t> version = db.write("versioned", "1", write);
    ASSERT_TRUE(version.has_value());
    write.if_version = *version;
    write.ttl = std::chrono::hours(1);
    EXPECT_GT(db.write("versioned", "2", write).value(), *version);
    try {
      db.write("versioned", "3", write);  // the version is no longer the key's
      ADD_FAILURE() << "no conflict";
    } catch (const tetherdb::Error& e) {
      EXPECT_EQ(e.status(), TETHER_CONFLICT);
    }
    EXPECT_EQ(db.increment("n", 2, 0, opts), 2);
    EXPECT_EQ(db.counter_total("n", 0, opts), 2);
    std::size_t keys = 0;
    for (const auto& page : db.key_pages(list)) keys += page.keys.size();
    EXPECT_EQ(keys, 4u);  // direct, the tethered key, versioned, n
    EXPECT_EQ(db.delete_prefix("n", opts), 1u);
    db.close();
  }
  fs::remove_all(dir);
}
