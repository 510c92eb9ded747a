// tetherdb.hpp in a C++17 program (built with -std=c++17 -Wpedantic
// -Werror): no designated initializers, Options set field by field.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
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
    db.close();
  }
  fs::remove_all(dir);
}
