// TetherDB from C++: open the embedded default, write, queue a write with
// the tether wrapper, read, list, close. Needs C++20 for the designated
// initializers; the header itself is C++17.
#include <iostream>
#include <string>
#include <utility>

#include "tetherdb.hpp"

int main() {
  try {
    // No configuration: the embedded default, a local store in ./tetherdb_data.
    tetherdb::Db db = tetherdb::Db::open();

    db.write("greeting", "hello, world", {.bucket = "messages"});

    // tether() writes what the wrapped function returns: a key (a UUID v4
    // when empty) and a value; queued here, so the worker applies it.
    auto log_event = tetherdb::tether(db, {.bucket = "messages", .queue = true},
                                      [](const std::string& event) {
                                        return std::pair<std::string, std::string>(
                                            "", R"({"event": ")" + event + "\"}");
                                      });
    auto [key, value] = log_event("login");
    std::cout << "queued " << key << " = " << value << "\n";
    db.flush();  // waits until queued writes are applied

    std::cout << "read greeting: " << db.read("greeting", {.bucket = "messages"}).value() << "\n";
    if (!db.read("absent", {.bucket = "messages"})) std::cout << "read absent: none\n";

    for (const tetherdb::Page& page : db.pages({.bucket = "messages", .page_size = 10})) {
      for (const auto& [k, v] : page.entries) std::cout << "listed " << k << " = " << v << "\n";
    }

    db.close();  // applies anything still queued; reports a failure, unlike the destructor
  } catch (const tetherdb::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
