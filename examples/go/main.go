// TetherDB from Go: open the embedded default, write, queue a write with
// Tether, read, list, close. Build it with PKG_CONFIG_PATH pointing at an
// installed tetherdb.pc (see scripts/install.sh).
package main

import (
	"errors"
	"fmt"
	"log"

	tetherdb "github.com/tetherdb/tetherdb/bindings/go"
)

func main() {
	// No configuration: the embedded default, a local store in ./tetherdb_data.
	db, err := tetherdb.Open("")
	if err != nil {
		log.Fatal(err)
	}

	if err := db.Write("greeting", []byte("hello, world"), tetherdb.Bucket("messages")); err != nil {
		log.Fatal(err)
	}

	// Tether writes what the wrapped function returns: a key (a UUID v4 when
	// empty) and a value (JSON unless it is a string or []byte); queued here,
	// so the worker applies it.
	logEvent := tetherdb.Tether(db, func() (string, any, error) {
		return "", map[string]string{"event": "login"}, nil
	}, tetherdb.Bucket("messages"), tetherdb.Queued())
	key, _, err := logEvent()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("queued", key)
	if err := db.Flush(); err != nil { // waits until queued writes are applied
		log.Fatal(err)
	}

	greeting, err := db.Read("greeting", tetherdb.Bucket("messages"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("read greeting: %s\n", greeting)
	if _, err := db.Read("absent", tetherdb.Bucket("messages")); errors.Is(err, tetherdb.ErrNotFound) {
		fmt.Println("read absent:", err)
	}

	for page, err := range db.Pages(10, tetherdb.Bucket("messages")) {
		if err != nil {
			log.Fatal(err)
		}
		for _, e := range page.Entries {
			fmt.Printf("listed %s = %s\n", e.Key, e.Value)
		}
	}

	if err := db.Close(); err != nil { // applies anything still queued
		log.Fatal(err)
	}
}
