package tetherdb_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	tetherdb "github.com/tetherdb/tetherdb/bindings/go"
)

// open opens a handle on a fresh store in a temporary directory, closed
// when the test ends; extra is more JSON members, e.g. a queue_batch section.
func open(t *testing.T, extra string) *tetherdb.DB {
	t.Helper()
	db, err := tetherdb.Open(config(t, extra))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}

func config(t *testing.T, extra string) string {
	path, _ := json.Marshal(filepath.Join(t.TempDir(), "data"))
	json := fmt.Sprintf(`{"logging": "none", "local": {"filepath": %s}`, path)
	if extra != "" {
		json += ", " + extra
	}
	return json + "}"
}

// statusOf checks that err is an *Error with a message and returns its status.
func statusOf(t *testing.T, err error) tetherdb.Status {
	t.Helper()
	var e *tetherdb.Error
	if !errors.As(err, &e) {
		t.Fatalf("want a *tetherdb.Error, got %v", err)
	}
	if e.Message == "" {
		t.Errorf("%v: empty message", err)
	}
	return e.Status
}

func TestWriteReadUpdateDelete(t *testing.T) {
	db := open(t, "")
	must(t, db.Write("k", []byte("v1")))
	if got := read(t, db, "k"); got != "v1" {
		t.Errorf("read %q", got)
	}
	must(t, db.Update("k", []byte("v2")))
	if got := read(t, db, "k"); got != "v2" {
		t.Errorf("read after update %q", got)
	}
	must(t, db.Delete("k"))
	if _, err := db.Read("k"); !errors.Is(err, tetherdb.ErrNotFound) {
		t.Errorf("read after delete: %v", err)
	}
	if err := db.Delete("k"); !errors.Is(err, tetherdb.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if err := db.Update("k", []byte("v3")); !errors.Is(err, tetherdb.ErrNotFound) {
		t.Errorf("update of an absent key: %v", err)
	}
	if _, err := db.Read("k"); !errors.Is(err, tetherdb.ErrNotFound) {
		t.Errorf("update created the key: %v", err)
	}
}

func TestValuesAreBytes(t *testing.T) {
	db := open(t, "")
	binary := []byte{'a', 0, 'b', 0xff}
	must(t, db.Write("binary", binary))
	if got := read(t, db, "binary"); got != string(binary) {
		t.Errorf("read %q", got)
	}
	must(t, db.Write("empty", nil))
	got, err := db.Read("empty")
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty value: %q (nil: %v), %v", got, got == nil, err)
	}
}

func TestBuckets(t *testing.T) {
	db := open(t, "")
	must(t, db.Write("k", []byte("in logs"), tetherdb.Bucket("logs")))
	must(t, db.Write("k", []byte("no bucket")))
	if got := read(t, db, "k", tetherdb.Bucket("logs")); got != "in logs" {
		t.Errorf("bucket read %q", got)
	}
	if got := read(t, db, "logs:k"); got != "in logs" {
		t.Errorf("the stored key is bucket:key, read %q", got)
	}
	if got := read(t, db, "k", tetherdb.Backend("local")); got != "no bucket" {
		t.Errorf("read naming the backend %q", got)
	}
}

func TestJSON(t *testing.T) {
	db := open(t, "")
	type event struct {
		Level string `json:"level"`
		Count int    `json:"count"`
	}
	must(t, db.WriteJSON("e", event{"info", 3}, tetherdb.Bucket("events")))
	if got := read(t, db, "e", tetherdb.Bucket("events")); got != `{"level":"info","count":3}` {
		t.Errorf("stored %q", got)
	}
	var back event
	must(t, db.ReadJSON("e", &back, tetherdb.Bucket("events")))
	if back != (event{"info", 3}) {
		t.Errorf("decoded %+v", back)
	}
	if err := db.ReadJSON("absent", &back); !errors.Is(err, tetherdb.ErrNotFound) {
		t.Errorf("absent: %v", err)
	}
	if err := db.WriteJSON("bad", make(chan int)); err == nil {
		t.Error("a channel encoded as JSON")
	}
}

func TestErrorsCarryStatusAndMessage(t *testing.T) {
	db := open(t, "")
	cases := []struct {
		name     string
		err      error
		sentinel error
		status   tetherdb.Status
		mention  string
	}{
		{"absent key", firstErr(db.Read("absent")), tetherdb.ErrNotFound, tetherdb.StatusNotFound, "absent"},
		{"colon in bucket", db.Write("k", nil, tetherdb.Bucket("a:b")), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"empty key", db.Write("", nil), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"page size 0", firstErr(db.List("", 0)), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"negative page size", firstErr(db.List("", -1)), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"unknown backend", db.Write("k", nil, tetherdb.Backend("nosuch")), tetherdb.ErrUnknownBackend, tetherdb.StatusUnknownBackend, "nosuch"},
		{"unknown config key", firstErr(tetherdb.Open(`{"no_such_key": 1}`)), tetherdb.ErrConfig, tetherdb.StatusConfig, "no_such_key"},
		{"missing config file", firstErr(tetherdb.OpenFile(filepath.Join(t.TempDir(), "absent.json"))), tetherdb.ErrConfig, tetherdb.StatusConfig, ""},
		{"Queued on a read", firstErr(db.Read("k", tetherdb.Queued())), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "Queued"},
		{"Prefix on a write", db.Write("k", nil, tetherdb.Prefix("p")), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "Prefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !errors.Is(c.err, c.sentinel) {
				t.Fatalf("%v is not %v", c.err, c.sentinel)
			}
			if got := statusOf(t, c.err); got != c.status {
				t.Errorf("status %v, want %v", got, c.status)
			}
			if !strings.Contains(c.err.Error(), c.mention) || !strings.HasPrefix(c.err.Error(), c.status.String()+": ") {
				t.Errorf("message %q should start with %v and mention %q", c.err, c.status, c.mention)
			}
			for _, other := range []error{tetherdb.ErrNotFound, tetherdb.ErrUnavailable, tetherdb.ErrNotRunning} {
				if other != c.sentinel && errors.Is(c.err, other) {
					t.Errorf("%v also matches %v", c.err, other)
				}
			}
		})
	}
	if s := tetherdb.Status(42).String(); s != "Status(42)" {
		t.Errorf("unknown status named %q", s)
	}
}

// Backend names reach the library as they are: whether or not this build has
// the etcd backend, the library itself answers for it (unknown backend, or
// unreachable: nothing listens on port 1).
func TestBackendNamesPassThrough(t *testing.T) {
	db := open(t, `"etcd": {"endpoints": ["127.0.0.1:1"], "timeout": 1}`)
	err := db.Write("k", []byte("v"), tetherdb.Backend("etcd"))
	if !errors.Is(err, tetherdb.ErrUnknownBackend) && !errors.Is(err, tetherdb.ErrUnavailable) {
		t.Fatalf("etcd: %v", err)
	}
	if !strings.Contains(err.Error(), "etcd") {
		t.Errorf("the message does not name the backend: %v", err)
	}
}

func TestOpenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	must(t, os.WriteFile(path, []byte(config(t, "")), 0o600))
	db, err := tetherdb.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	must(t, db.Write("k", []byte("v")))
	must(t, db.Close())
	must(t, db.Close()) // a second Close is a no-op
	if err := db.Write("k", []byte("v")); !errors.Is(err, tetherdb.ErrInvalidArgument) {
		t.Errorf("write after Close: %v", err)
	}
}

func TestListAndPages(t *testing.T) {
	db := open(t, "")
	for i := range 7 {
		must(t, db.Write(fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("v%d", i)), tetherdb.Bucket("b")))
	}
	must(t, db.Write("other", []byte("x"), tetherdb.Bucket("bX"))) // never listed with b

	first, err := db.List("", 3, tetherdb.Bucket("b"))
	must(t, err)
	if len(first.Entries) != 3 || first.Entries[0].Key != "k0" || string(first.Entries[0].Value) != "v0" || first.Next == "" {
		t.Fatalf("first page %+v", first)
	}

	var keys []string
	var sizes []int
	for page, err := range db.Pages(3, tetherdb.Bucket("b")) {
		must(t, err)
		sizes = append(sizes, len(page.Entries))
		for _, e := range page.Entries {
			keys = append(keys, e.Key)
		}
	}
	if fmt.Sprint(sizes) != "[3 3 1]" || strings.Join(keys, ",") != "k0,k1,k2,k3,k4,k5,k6" {
		t.Errorf("pages %v, keys %v", sizes, keys)
	}

	prefixed, err := db.List("", 10, tetherdb.Bucket("b"), tetherdb.Prefix("k5"))
	must(t, err)
	if len(prefixed.Entries) != 1 || string(prefixed.Entries[0].Value) != "v5" || prefixed.Next != "" {
		t.Errorf("prefix listing %+v", prefixed)
	}

	pages := 0
	for range db.Pages(3, tetherdb.Bucket("b")) {
		pages++
		break // the iterator stops when the loop does
	}
	for range db.Pages(3, tetherdb.Bucket("empty")) {
		pages += 100
	}
	if pages != 1 {
		t.Errorf("early break and empty listing: %d", pages)
	}

	var failures int
	for page, err := range db.Pages(3, tetherdb.Bucket("a:b")) {
		if !errors.Is(err, tetherdb.ErrInvalidArgument) || page.Entries != nil {
			t.Errorf("page %+v, error %v", page, err)
		}
		failures++
	}
	if failures != 1 {
		t.Errorf("a failure is yielded once, not %d times", failures)
	}
}

func TestQueuedWritesAndWorker(t *testing.T) {
	db := open(t, `"queue_batch": {"autostart": false, "interval": 60}`)
	if err := db.Write("q", []byte("v"), tetherdb.Queued()); !errors.Is(err, tetherdb.ErrNotRunning) {
		t.Fatalf("queued write before Start: %v", err)
	}
	must(t, db.Start())
	must(t, db.Start()) // idempotent
	must(t, db.Write("q", []byte("v"), tetherdb.Queued()))
	must(t, db.Flush()) // does not wait for the 60 s interval
	if got := read(t, db, "q"); got != "v" {
		t.Errorf("after Flush: %q", got)
	}
	must(t, db.WriteJSON("q2", map[string]int{"n": 2}, tetherdb.Queued()))
	must(t, db.Stop()) // applies what is queued
	must(t, db.Stop())
	if got := read(t, db, "q2"); got != `{"n":2}` {
		t.Errorf("after Stop: %q", got)
	}
}

func TestCloseAppliesQueuedWrites(t *testing.T) {
	cfg := config(t, `"queue_batch": {"interval": 60}`)
	db, err := tetherdb.Open(cfg)
	must(t, err)
	must(t, db.Write("q", []byte("v"), tetherdb.Queued()))
	must(t, db.Close())
	db, err = tetherdb.Open(cfg) // Close released the store's lock
	must(t, err)
	defer db.Close()
	if got := read(t, db, "q"); got != "v" {
		t.Errorf("after reopening: %q", got)
	}
}

var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestTether(t *testing.T) {
	db := open(t, "")
	logEvent := tetherdb.Tether(db, func() (string, any, error) {
		return "", map[string]string{"event": "login"}, nil
	}, tetherdb.Bucket("logs"))
	key1, value, err := logEvent()
	must(t, err)
	key2, _, err := logEvent()
	must(t, err)
	if !uuid4.MatchString(key1) || key1 == key2 {
		t.Errorf("keys %q, %q", key1, key2)
	}
	if value.(map[string]string)["event"] != "login" {
		t.Errorf("returned value %v", value)
	}
	if got := read(t, db, key1, tetherdb.Bucket("logs")); got != `{"event":"login"}` {
		t.Errorf("stored %q", got)
	}

	// Strings and bytes are stored as they are, under the key fn chose.
	for _, c := range []struct {
		value any
		want  string
	}{{"plain", "plain"}, {[]byte("raw"), "raw"}} {
		key, _, err := tetherdb.Tether(db, func() (string, any, error) { return "fixed", c.value, nil })()
		must(t, err)
		if got := read(t, db, key); key != "fixed" || got != c.want {
			t.Errorf("%q stored %q, want %q", key, got, c.want)
		}
	}

	// fn's error is returned, and nothing is written.
	boom := errors.New("boom")
	if _, _, err := tetherdb.Tether(db, func() (string, any, error) { return "failed", "x", boom })(); err != boom {
		t.Errorf("fn's error: %v", err)
	}
	if _, err := db.Read("failed"); !errors.Is(err, tetherdb.ErrNotFound) {
		t.Errorf("written despite fn's error: %v", err)
	}
}

func TestTetherQueued(t *testing.T) {
	db := open(t, `"queue_batch": {"interval": 60}`)
	queued := tetherdb.Tether(db, func() (string, any, error) { return "k", "v", nil }, tetherdb.Queued())
	_, _, err := queued()
	must(t, err)
	must(t, db.Flush())
	if got := read(t, db, "k"); got != "v" {
		t.Errorf("read %q", got)
	}
	must(t, db.Stop())
	if _, _, err := queued(); !errors.Is(err, tetherdb.ErrNotRunning) {
		t.Errorf("queued while stopped: %v", err)
	}
}

// 16 goroutines write through one handle at once (run it with -race).
func TestConcurrentWrites(t *testing.T) {
	db := open(t, "")
	const goroutines, writes = 16, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range writes {
				key := fmt.Sprintf("g%02d-%03d", g, i)
				opts := []tetherdb.Option{tetherdb.Bucket("c")}
				if i%2 == 1 {
					opts = append(opts, tetherdb.Queued())
				}
				if err := db.Write(key, []byte(key), opts...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	must(t, db.Flush())
	n := 0
	for page, err := range db.Pages(64, tetherdb.Bucket("c")) {
		must(t, err)
		for _, e := range page.Entries {
			if e.Key != string(e.Value) {
				t.Errorf("%s = %s", e.Key, e.Value)
			}
		}
		n += len(page.Entries)
	}
	if n != goroutines*writes {
		t.Errorf("listed %d keys, want %d", n, goroutines*writes)
	}
}

// tether_last_error is per OS thread: 16 goroutines failing at once must
// each get the message of their own failure, never another's.
func TestErrorMessagesPerGoroutine(t *testing.T) {
	db := open(t, "")
	const goroutines, calls = 16, 300
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backend := fmt.Sprintf("nosuch-%02d", g)
			<-start
			for range calls {
				err := db.Write("k", nil, tetherdb.Backend(backend))
				if !errors.Is(err, tetherdb.ErrUnknownBackend) || !strings.Contains(err.Error(), `"`+backend+`"`) {
					t.Errorf("goroutine %d got %v", g, err)
					return
				}
			}
		}()
	}
	close(start)
	wg.Wait()
}

func TestVersion(t *testing.T) {
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(tetherdb.Version()) {
		t.Errorf("version %q", tetherdb.Version())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, db *tetherdb.DB, key string, opts ...tetherdb.Option) string {
	t.Helper()
	value, err := db.Read(key, opts...)
	must(t, err)
	return string(value)
}

func firstErr[T any](_ T, err error) error { return err }
