package tetherdb_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tetherdb "github.com/tetherdb/tetherdb/bindings/go"
)

// open opens a handle on a fresh local store in a temporary directory,
// closed when the test ends; extra is more JSON members, e.g. a queue_batch
// section.
func open(t *testing.T, extra string) *tetherdb.DB {
	t.Helper()
	return openConfig(t, config(t, extra))
}

func openConfig(t *testing.T, config string) *tetherdb.DB {
	t.Helper()
	db, err := tetherdb.Open(config)
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
	return localConfig(t.TempDir(), extra)
}

func localConfig(dir, extra string) string {
	path, _ := json.Marshal(filepath.Join(dir, "data"))
	return withExtra(fmt.Sprintf(`{"logging": "none", "local": {"filepath": %s}`, path), extra)
}

func withExtra(json, extra string) string {
	if extra != "" {
		json += ", " + extra
	}
	return json + "}"
}

// on is where a core test runs: a handle whose only backend is local (a
// fresh store) or the etcd of TETHERDB_TEST_ETCD, and a bucket of the test's
// own, since that etcd is shared by every test of every binding.
type on struct {
	backend string
	bucket  string
	dir     string // local's store is in it
}

// config is a configuration for this backend; queueBatch is the members of
// its queue_batch section, if any. Without a local section the outbox
// would default to one per cluster under ~/.local/state/tetherdb, shared by
// every test: on etcd it goes in the test's directory.
func (o on) config(queueBatch string) string {
	if o.backend == "local" {
		extra := ""
		if queueBatch != "" {
			extra = `"queue_batch": {` + queueBatch + "}"
		}
		return localConfig(o.dir, extra)
	}
	endpoint, _ := json.Marshal(os.Getenv("TETHERDB_TEST_ETCD"))
	outbox, _ := json.Marshal(o.outboxPath())
	queue := fmt.Sprintf(`"queue_batch": {"outbox_path": %s`, outbox)
	if queueBatch != "" {
		queue += ", " + queueBatch
	}
	return withExtra(fmt.Sprintf(`{"logging": "none", "etcd": {"endpoints": [%s]}`, endpoint), queue+"}")
}

// outboxPath is where the handles of config keep their outbox.
func (o on) outboxPath() string {
	if o.backend == "local" {
		return filepath.Join(o.dir, "data.outbox")
	}
	return filepath.Join(o.dir, "outbox")
}

// open opens a handle on this backend, closed when the test ends.
func (o on) open(t *testing.T, queueBatch string) *tetherdb.DB {
	t.Helper()
	return openConfig(t, o.config(queueBatch))
}

// in is the option of this test's bucket.
func (o on) in() tetherdb.Option { return tetherdb.Bucket(o.bucket) }

// onEachBackend runs test as a subtest on local, and on etcd when
// TETHERDB_TEST_ETCD names one (scripts/test_bindings.sh starts it). Without
// it the etcd subtest is skipped, or fails when CI is set.
func onEachBackend(t *testing.T, test func(t *testing.T, o on)) {
	for _, backend := range []string{"local", "etcd"} {
		t.Run(backend, func(t *testing.T) {
			if backend == "etcd" && os.Getenv("TETHERDB_TEST_ETCD") == "" {
				if os.Getenv("CI") != "" {
					t.Fatal("CI is set but TETHERDB_TEST_ETCD is not: run the tests with scripts/test_bindings.sh, which starts etcd")
				}
				t.Skip("no etcd: set TETHERDB_TEST_ETCD=127.0.0.1:PORT, or run scripts/test_bindings.sh, which starts one")
			}
			test(t, on{backend: backend, bucket: fmt.Sprintf("go-%016x", rand.Uint64()), dir: t.TempDir()})
		})
	}
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
		{"TTL on a read", firstErr(db.Read("k", tetherdb.TTL(time.Second))), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "TTL"},
		{"IfVersion on an update", db.Update("k", nil, tetherdb.IfVersion(1)), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "IfVersion"},
		{"IfAbsent on a delete", db.Delete("k", tetherdb.IfAbsent()), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "IfAbsent"},
		{"KeysOnly on an increment", firstErr(db.Increment("k", 1, 0, tetherdb.KeysOnly())), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "KeysOnly"},
		{"Sliding on a list", firstErr(db.List("", 1, tetherdb.Sliding())), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "Sliding"},
		{"Prefix on DeletePrefix", firstErr(db.DeletePrefix("p", tetherdb.Prefix("p"))), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "Prefix"},
		{"negative TTL", db.Write("k", nil, tetherdb.TTL(-time.Second)), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "negative"},
		{"negative Touch", db.Touch("k", -time.Second), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, "negative"},
		{"Sliding without TTL", db.Write("k", nil, tetherdb.Sliding()), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"IfAbsent and IfVersion", db.Write("k", nil, tetherdb.IfAbsent(), tetherdb.IfVersion(1)), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"too many shards", firstErr(db.Increment("k", 1, tetherdb.MaxShards+1)), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"delete everything", firstErr(db.DeletePrefix("")), tetherdb.ErrInvalidArgument, tetherdb.StatusInvalidArgument, ""},
		{"a counter that is not a number", conflictingIncrement(db), tetherdb.ErrConflict, tetherdb.StatusConflict, "text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(c.err, c.sentinel) {
				t.Fatalf("%v is not %v", c.err, c.sentinel)
			}
			if got := statusOf(t, c.err); got != c.status {
				t.Errorf("status %v, want %v", got, c.status)
			}
			if !strings.Contains(c.err.Error(), c.mention) || !strings.HasPrefix(c.err.Error(), c.status.String()+": ") {
				t.Errorf("message %q should start with %v and mention %q", c.err, c.status, c.mention)
			}
			for _, other := range []error{tetherdb.ErrNotFound, tetherdb.ErrUnavailable, tetherdb.ErrNotRunning, tetherdb.ErrConflict} {
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

// conflictingIncrement increments a key that holds text: a conflict.
func conflictingIncrement(db *tetherdb.DB) error {
	if err := db.Write("text", []byte("hello")); err != nil {
		return err
	}
	_, err := db.Increment("text", 1, 0)
	return err
}

func TestWriteReadUpdateDelete(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		must(t, db.Write("k", []byte("v1"), o.in()))
		if got := read(t, db, "k", o.in()); got != "v1" {
			t.Errorf("read %q", got)
		}
		must(t, db.Write("k", []byte("v1b"), o.in()))
		if got := read(t, db, "k", o.in()); got != "v1b" {
			t.Errorf("read after overwrite %q", got)
		}
		must(t, db.Update("k", []byte("v2"), o.in()))
		if got := read(t, db, "k", o.in()); got != "v2" {
			t.Errorf("read after update %q", got)
		}
		must(t, db.Delete("k", o.in()))
		if _, err := db.Read("k", o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("read after delete: %v", err)
		}
		if err := db.Delete("k", o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if err := db.Update("k", []byte("v3"), o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("update of an absent key: %v", err)
		}
		if _, err := db.Read("k", o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("update created the key: %v", err)
		}
		if err := db.Update("never", []byte("v"), o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("update of a never-written key: %v", err)
		}
		page, err := db.List("", 10, o.in())
		must(t, err)
		if len(page.Entries) != 0 {
			t.Errorf("update created keys: %+v", page.Entries)
		}
	})
}

func TestValuesAreBytes(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		binary := []byte{'a', 0, 'b', 0xff}
		must(t, db.Write("binary", binary, o.in()))
		if got := read(t, db, "binary", o.in()); got != string(binary) {
			t.Errorf("read %q", got)
		}
		must(t, db.Write("empty", nil, o.in()))
		got, err := db.Read("empty", o.in())
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("empty value: %q (nil: %v), %v", got, got == nil, err)
		}
	})
}

func TestBuckets(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		logs, logsX := o.bucket, o.bucket+"X" // one the prefix of the other
		must(t, db.Write("k", []byte("in logs"), tetherdb.Bucket(logs)))
		must(t, db.Write("k", []byte("in logsX"), tetherdb.Bucket(logsX)))
		if got := read(t, db, "k", tetherdb.Bucket(logs)); got != "in logs" {
			t.Errorf("bucket read %q", got)
		}
		if got := read(t, db, "k", tetherdb.Bucket(logsX)); got != "in logsX" {
			t.Errorf("bucket read %q", got)
		}
		if got := read(t, db, logs+":k"); got != "in logs" {
			t.Errorf("the stored key is bucket:key, read %q", got)
		}
		if got := read(t, db, "k", tetherdb.Bucket(logs), tetherdb.Backend(o.backend)); got != "in logs" {
			t.Errorf("read naming the backend %q", got)
		}
		// A bucket's listing holds its keys only, not those of a bucket its name prefixes.
		page, err := db.List("", 10, tetherdb.Bucket(logs))
		must(t, err)
		if len(page.Entries) != 1 || page.Entries[0].Key != "k" || string(page.Entries[0].Value) != "in logs" || page.Next != "" {
			t.Errorf("listing of %s: %+v", logs, page)
		}
	})
}

func TestJSON(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		type event struct {
			Level string `json:"level"`
			Count int    `json:"count"`
		}
		must(t, db.WriteJSON("e", event{"info", 3}, o.in()))
		if got := read(t, db, "e", o.in()); got != `{"level":"info","count":3}` {
			t.Errorf("stored %q", got)
		}
		var back event
		must(t, db.ReadJSON("e", &back, o.in()))
		if back != (event{"info", 3}) {
			t.Errorf("decoded %+v", back)
		}
		if err := db.ReadJSON("absent", &back, o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("absent: %v", err)
		}
		if err := db.WriteJSON("bad", make(chan int), o.in()); err == nil {
			t.Error("a channel encoded as JSON")
		}
	})
}

func TestListAndPages(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		b := o.in()
		for i := range 7 {
			must(t, db.Write(fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("v%d", i)), b))
		}
		must(t, db.Write("other", []byte("x"), tetherdb.Bucket(o.bucket+"X"))) // never listed with b

		first, err := db.List("", 3, b)
		must(t, err)
		if len(first.Entries) != 3 || first.Entries[0].Key != "k0" || string(first.Entries[0].Value) != "v0" || first.Next != "k2" {
			t.Fatalf("first page %+v", first)
		}

		sizes, keys := pages(t, db, 3, b)
		if fmt.Sprint(sizes) != "[3 3 1]" || strings.Join(keys, ",") != "k0,k1,k2,k3,k4,k5,k6" {
			t.Errorf("pages %v, keys %v", sizes, keys)
		}

		// Next is empty exactly on the last page, also when that page is full.
		all, err := db.List("", 7, b)
		must(t, err)
		if len(all.Entries) != 7 || all.Next != "" {
			t.Errorf("one full page: %d entries, next %q", len(all.Entries), all.Next)
		}
		six, err := db.List("", 6, b)
		must(t, err)
		rest, err := db.List(six.Next, 6, b)
		must(t, err)
		if six.Next != "k5" || len(rest.Entries) != 1 || rest.Entries[0].Key != "k6" || rest.Next != "" {
			t.Errorf("pages of 6: next %q, then %+v", six.Next, rest)
		}
		if sizes, _ := pages(t, db, 7, b); fmt.Sprint(sizes) != "[7]" {
			t.Errorf("pages of 7: %v, want no empty page after a full last one", sizes)
		}

		prefixed, err := db.List("", 10, b, tetherdb.Prefix("k5"))
		must(t, err)
		if len(prefixed.Entries) != 1 || string(prefixed.Entries[0].Value) != "v5" || prefixed.Next != "" {
			t.Errorf("prefix listing %+v", prefixed)
		}

		n := 0
		for range db.Pages(3, b) {
			n++
			break // the iterator stops when the loop does
		}
		for range db.Pages(3, tetherdb.Bucket(o.bucket+"-empty")) {
			n += 100
		}
		if n != 1 {
			t.Errorf("early break and empty listing: %d", n)
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
	})
}

func TestVersionsAndConditionalWrites(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		v1, err := db.WriteVersioned("k", []byte("v1"), o.in())
		must(t, err)
		if v1 == 0 {
			t.Fatal("version 0")
		}
		value, version, err := db.ReadVersioned("k", o.in())
		if err != nil || string(value) != "v1" || version != v1 {
			t.Errorf("ReadVersioned: %q, %d, %v; want v1, %d", value, version, err, v1)
		}
		if version, err := db.KeyVersion("k", o.in()); err != nil || version != v1 {
			t.Errorf("KeyVersion: %d, %v", version, err)
		}
		if ok, err := db.Exists("k", o.in()); !ok || err != nil {
			t.Errorf("Exists: %v, %v", ok, err)
		}
		if ok, err := db.Exists("absent", o.in()); ok || err != nil {
			t.Errorf("Exists of an absent key: %v, %v", ok, err)
		}
		if _, _, err := db.ReadVersioned("absent", o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("ReadVersioned of an absent key: %v", err)
		}
		if _, err := db.KeyVersion("absent", o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("KeyVersion of an absent key: %v", err)
		}

		// IfVersion: written at that version only.
		v2, err := db.WriteVersioned("k", []byte("v2"), o.in(), tetherdb.IfVersion(v1))
		must(t, err)
		if v2 <= v1 {
			t.Errorf("version %d after %d", v2, v1)
		}
		err = db.Write("k", []byte("v3"), o.in(), tetherdb.IfVersion(v1))
		if !errors.Is(err, tetherdb.ErrConflict) || statusOf(t, err) != tetherdb.StatusConflict {
			t.Errorf("a write at a stale version: %v", err)
		}
		if got := read(t, db, "k", o.in()); got != "v2" {
			t.Errorf("a failed condition changed the value to %q", got)
		}
		if err := db.Write("never", []byte("v"), o.in(), tetherdb.IfVersion(v2)); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("IfVersion on an absent key: %v", err)
		}

		// IfAbsent: written where the key is absent only.
		if err := db.Write("k", []byte("v3"), o.in(), tetherdb.IfAbsent()); !errors.Is(err, tetherdb.ErrConflict) {
			t.Errorf("IfAbsent on a present key: %v", err)
		}
		created, err := db.WriteVersioned("new", []byte("n"), o.in(), tetherdb.IfAbsent())
		must(t, err)
		if version, err := db.KeyVersion("new", o.in()); err != nil || version != created {
			t.Errorf("KeyVersion %d, %v; want %d", version, err, created)
		}
		// With Queued, a condition is the library's to refuse.
		if err := db.Write("k", []byte("x"), o.in(), tetherdb.Queued(), tetherdb.IfVersion(v2)); !errors.Is(err, tetherdb.ErrInvalidArgument) {
			t.Errorf("IfVersion with Queued: %v", err)
		}

		// A version grows across a delete and a new write of the key.
		must(t, db.Delete("k", o.in()))
		v3, err := db.WriteVersioned("k", []byte("again"), o.in())
		must(t, err)
		if v3 <= v2 {
			t.Errorf("version %d after a delete, %d before", v3, v2)
		}

		// A queued write has no version yet.
		queued, err := db.WriteVersioned("q", []byte("v"), o.in(), tetherdb.Queued())
		if err != nil || queued != 0 {
			t.Errorf("a queued write: version %d, %v", queued, err)
		}
		must(t, db.Flush())
		if got := read(t, db, "q", o.in()); got != "v" {
			t.Errorf("queued write read %q", got)
		}
	})
}

func TestDeleteIfVersion(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		v1, err := db.WriteVersioned("k", []byte("v1"), o.in())
		must(t, err)
		v2, err := db.WriteVersioned("k", []byte("v2"), o.in())
		must(t, err)
		if err := db.Delete("k", o.in(), tetherdb.IfVersion(v1)); !errors.Is(err, tetherdb.ErrConflict) {
			t.Errorf("a delete at a stale version: %v", err)
		}
		if got := read(t, db, "k", o.in()); got != "v2" {
			t.Errorf("a failed condition changed the value to %q", got)
		}
		must(t, db.Delete("k", o.in(), tetherdb.IfVersion(v2)))
		if err := db.Delete("k", o.in(), tetherdb.IfVersion(v2)); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("a conditional delete of an absent key: %v", err)
		}
	})
}

// eventually polls until done holds, for at most 30 s, and says whether it
// did: a bound for a key's expiry to show, not a time it must show within.
func eventually(done func() bool) bool {
	for giveUp := time.Now().Add(30 * time.Second); !done(); {
		if time.Now().After(giveUp) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func TestExpiryAndTouch(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		absent := func(key string) func() bool {
			return func() bool {
				ok, err := db.Exists(key, o.in())
				must(t, err)
				return !ok
			}
		}

		must(t, db.Write("short", []byte("v"), o.in(), tetherdb.TTL(50*time.Millisecond)))
		if !eventually(absent("short")) {
			t.Fatal("a key with a TTL of 50 ms still there after 30 s")
		}
		if _, err := db.Read("short", o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("read of an expired key: %v", err)
		}
		if err := db.Touch("short", time.Hour, o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("touch of an expired key: %v", err)
		}
		must(t, db.Write("short", []byte("again"), o.in(), tetherdb.IfAbsent())) // absent for conditions too

		// Less than a millisecond is rounded up, not taken for no expiry.
		must(t, db.Write("tiny", []byte("v"), o.in(), tetherdb.TTL(time.Microsecond)))
		if !eventually(absent("tiny")) {
			t.Error("a key with a TTL of 1 µs still there after 30 s")
		}

		must(t, db.Write("long", []byte("v"), o.in(), tetherdb.TTL(time.Hour)))
		if got := read(t, db, "long", o.in()); got != "v" {
			t.Errorf("read %q", got)
		}
		must(t, db.Touch("long", 50*time.Millisecond, o.in()))
		if !eventually(absent("long")) {
			t.Error("a key touched to 50 ms still there after 30 s")
		}

		// A queued write carries its TTL; Touch(0) clears it.
		must(t, db.Write("queued", []byte("v"), o.in(), tetherdb.Queued(), tetherdb.TTL(time.Hour)))
		must(t, db.Flush())
		must(t, db.Touch("queued", 0, o.in()))
		if got := read(t, db, "queued", o.in()); got != "v" {
			t.Errorf("read %q", got)
		}

		must(t, db.WriteJSON("sliding", map[string]int{"n": 1}, o.in(), tetherdb.TTL(time.Hour), tetherdb.Sliding()))
		if got := read(t, db, "sliding", o.in()); got != `{"n":1}` {
			t.Errorf("read %q", got)
		}
		if err := db.Touch("never", time.Hour, o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("touch of an absent key: %v", err)
		}
	})
}

func TestCounters(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		for _, step := range []struct{ delta, want int64 }{{1, 1}, {41, 42}, {-50, -8}} {
			if got, err := db.Increment("c", step.delta, 0, o.in()); err != nil || got != step.want {
				t.Errorf("Increment(%d): %d, %v; want %d", step.delta, got, err, step.want)
			}
		}
		if got := read(t, db, "c", o.in()); got != "-8" {
			t.Errorf("stored %q, want the decimal text -8", got)
		}
		if total, err := db.CounterTotal("c", 0, o.in()); err != nil || total != -8 {
			t.Errorf("CounterTotal: %d, %v", total, err)
		}
		must(t, db.Add("c", 8, 0, o.in()))
		if got := read(t, db, "c", o.in()); got != "0" {
			t.Errorf("after Add: %q", got)
		}
		if total, err := db.CounterTotal("absent", 0, o.in()); err != nil || total != 0 {
			t.Errorf("CounterTotal of an absent key: %d, %v", total, err)
		}

		// A value that is no counter, or a sum beyond 64 bits: a conflict,
		// and nothing changes.
		must(t, db.Write("text", []byte("hello"), o.in()))
		if _, err := db.Increment("text", 1, 0, o.in()); !errors.Is(err, tetherdb.ErrConflict) {
			t.Errorf("increment of text: %v", err)
		}
		if _, err := db.CounterTotal("text", 0, o.in()); !errors.Is(err, tetherdb.ErrConflict) {
			t.Errorf("total of text: %v", err)
		}
		if got := read(t, db, "text", o.in()); got != "hello" {
			t.Errorf("a failed increment changed the value to %q", got)
		}
		max := strconv.FormatInt(math.MaxInt64, 10)
		must(t, db.Write("max", []byte(max), o.in()))
		if err := db.Add("max", 1, 0, o.in()); !errors.Is(err, tetherdb.ErrConflict) {
			t.Errorf("an overflow: %v", err)
		}
		if got := read(t, db, "max", o.in()); got != max {
			t.Errorf("an overflow changed the value to %q", got)
		}
	})
}

func TestShardedCounters(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		for range 20 {
			must(t, db.Add("hits", 1, 4, o.in()))
		}
		if total, err := db.CounterTotal("hits", 4, o.in()); err != nil || total != 20 {
			t.Errorf("CounterTotal: %d, %v", total, err)
		}
		if total, err := db.Increment("hits", 5, 4, o.in()); err != nil || total != 25 {
			t.Errorf("Increment: %d, %v; want the total after it, 25", total, err)
		}
		if ok, err := db.Exists("hits", o.in()); ok || err != nil {
			t.Errorf("a sharded counter wrote its key: %v, %v", ok, err)
		}
		// The shards are ordinary keys of the bucket, hits#shard0 to hits#shard3.
		var sum int64
		for page, err := range db.Pages(10, o.in(), tetherdb.Prefix("hits")) {
			must(t, err)
			for _, e := range page.Entries {
				if !regexp.MustCompile(`^hits#shard[0-3]$`).MatchString(e.Key) {
					t.Errorf("key %q", e.Key)
				}
				n, err := strconv.ParseInt(string(e.Value), 10, 64)
				must(t, err)
				sum += n
			}
		}
		if sum != 25 {
			t.Errorf("the shards sum to %d", sum)
		}
	})
}

// Goroutines incrementing one counter through one handle (run it with
// -race): each increment counts once.
func TestConcurrentIncrements(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		const goroutines, increments = 8, 25
		var wg sync.WaitGroup
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range increments {
					if err := db.Add("hot", 1, 0, o.in()); err != nil {
						t.Error(err)
						return
					}
					if _, err := db.Increment("sharded", 1, 8, o.in()); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		for _, c := range []struct {
			key    string
			shards uint32
		}{{"hot", 0}, {"sharded", 8}} {
			if total, err := db.CounterTotal(c.key, c.shards, o.in()); err != nil || total != goroutines*increments {
				t.Errorf("%s: %d, %v; want %d", c.key, total, err, goroutines*increments)
			}
		}
	})
}

func TestKeysOnlyAndDeletePrefix(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		other := tetherdb.Bucket(o.bucket + "X") // a bucket whose name this one prefixes
		for _, key := range []string{"a1", "a2", "a3", "b1"} {
			must(t, db.Write(key, []byte("value of "+key), o.in()))
		}
		must(t, db.Write("a9", []byte("v"), other))

		first, err := db.List("", 2, o.in(), tetherdb.KeysOnly())
		must(t, err)
		if len(first.Entries) != 2 || first.Entries[0].Key != "a1" || first.Entries[1].Key != "a2" || first.Next != "a2" {
			t.Errorf("first page %+v", first)
		}
		for _, e := range first.Entries {
			if e.Value != nil {
				t.Errorf("%s: value %q in a keys-only page", e.Key, e.Value)
			}
		}
		sizes, keys := pages(t, db, 3, o.in(), tetherdb.KeysOnly())
		if fmt.Sprint(sizes) != "[3 1]" || strings.Join(keys, ",") != "a1,a2,a3,b1" {
			t.Errorf("pages %v, keys %v", sizes, keys)
		}
		if _, keys := pages(t, db, 10, o.in(), tetherdb.KeysOnly(), tetherdb.Prefix("a")); len(keys) != 3 {
			t.Errorf("keys with prefix a: %v", keys)
		}

		if n, err := db.DeletePrefix("a", o.in()); err != nil || n != 3 {
			t.Errorf("DeletePrefix(a): %d, %v", n, err)
		}
		if _, keys := pages(t, db, 10, o.in(), tetherdb.KeysOnly()); strings.Join(keys, ",") != "b1" {
			t.Errorf("left %v", keys)
		}
		if got := read(t, db, "a9", other); got != "v" {
			t.Errorf("the other bucket: %q", got)
		}
		if n, err := db.DeletePrefix("a", o.in()); err != nil || n != 0 {
			t.Errorf("DeletePrefix(a) again: %d, %v", n, err)
		}
		if n, err := db.DeletePrefix("", o.in()); err != nil || n != 1 {
			t.Errorf("DeletePrefix of the whole bucket: %d, %v", n, err)
		}
		if n, err := db.DeletePrefix("", other); err != nil || n != 1 {
			t.Errorf("DeletePrefix of the other bucket: %d, %v", n, err)
		}
	})
}

// pages lists with db.Pages: the size of each page, and every key.
func pages(t *testing.T, db *tetherdb.DB, pageSize int, opts ...tetherdb.Option) (sizes []int, keys []string) {
	t.Helper()
	for page, err := range db.Pages(pageSize, opts...) {
		must(t, err)
		sizes = append(sizes, len(page.Entries))
		for _, e := range page.Entries {
			keys = append(keys, e.Key)
		}
	}
	return sizes, keys
}

func TestQueuedWritesAndWorker(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, `"autostart": false, "interval": 60`)
		if err := db.Write("q", []byte("v"), o.in(), tetherdb.Queued()); !errors.Is(err, tetherdb.ErrNotRunning) {
			t.Fatalf("queued write before Start: %v", err)
		}
		must(t, db.Start())
		must(t, db.Start()) // idempotent
		must(t, db.Write("q", []byte("v"), o.in(), tetherdb.Queued()))
		must(t, db.Flush()) // does not wait for the 60 s interval
		if got := read(t, db, "q", o.in()); got != "v" {
			t.Errorf("after Flush: %q", got)
		}
		must(t, db.WriteJSON("q2", map[string]int{"n": 2}, o.in(), tetherdb.Queued()))
		must(t, db.Stop()) // applies what is queued
		must(t, db.Stop())
		if got := read(t, db, "q2", o.in()); got != `{"n":2}` {
			t.Errorf("after Stop: %q", got)
		}
	})
}

func TestCloseAppliesQueuedWrites(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		cfg := o.config(`"interval": 60`)
		db, err := tetherdb.Open(cfg)
		must(t, err)
		must(t, db.Write("q", []byte("v"), o.in(), tetherdb.Queued()))
		must(t, db.Close())
		db = openConfig(t, cfg) // Close released the local store's lock
		if got := read(t, db, "q", o.in()); got != "v" {
			t.Errorf("after reopening: %q", got)
		}
	})
}

var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestTether(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		logEvent := tetherdb.Tether(db, func() (string, any, error) {
			return "", map[string]string{"event": "login"}, nil
		}, o.in())
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
		for _, key := range []string{key1, key2} {
			if got := read(t, db, key, o.in()); got != `{"event":"login"}` {
				t.Errorf("stored %q", got)
			}
		}

		// Strings and bytes are stored as they are, under the key fn chose.
		for _, c := range []struct {
			value any
			want  string
		}{{"plain", "plain"}, {[]byte("raw"), "raw"}} {
			key, _, err := tetherdb.Tether(db, func() (string, any, error) { return "fixed", c.value, nil }, o.in())()
			must(t, err)
			if got := read(t, db, key, o.in()); key != "fixed" || got != c.want {
				t.Errorf("%q stored %q, want %q", key, got, c.want)
			}
		}

		// fn's error is returned, and nothing is written.
		boom := errors.New("boom")
		if _, _, err := tetherdb.Tether(db, func() (string, any, error) { return "failed", "x", boom }, o.in())(); err != boom {
			t.Errorf("fn's error: %v", err)
		}
		if _, err := db.Read("failed", o.in()); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Errorf("written despite fn's error: %v", err)
		}
	})
}

func TestTetherQueued(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, `"interval": 60`)
		queued := tetherdb.Tether(db, func() (string, any, error) { return "k", "v", nil }, o.in(), tetherdb.Queued())
		_, _, err := queued()
		must(t, err)
		must(t, db.Flush())
		if got := read(t, db, "k", o.in()); got != "v" {
			t.Errorf("read %q", got)
		}
		must(t, db.Stop())
		if _, _, err := queued(); !errors.Is(err, tetherdb.ErrNotRunning) {
			t.Errorf("queued while stopped: %v", err)
		}
	})
}

func TestStats(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, `"interval": 60`)
		stats, err := db.Stats()
		must(t, err)
		if !stats.Running || stats.Backends[o.backend].Queued != 0 {
			t.Errorf("fresh handle: %+v", stats)
		}
		for _, key := range []string{"a", "b", "c"} {
			must(t, db.Write(key, []byte("v"), o.in(), tetherdb.Queued()))
		}
		must(t, db.Flush())
		stats, err = db.Stats()
		must(t, err)
		backend, ok := stats.Backends[o.backend]
		if !ok || len(stats.Backends) != 1 {
			t.Fatalf("backends %+v, want only %s", stats.Backends, o.backend)
		}
		if backend.Queued != 3 || backend.Applied != 3 || backend.Pending != 0 || backend.Failed != 0 ||
			backend.UnreachableMs != 0 || backend.LastError != nil {
			t.Errorf("after Flush: %+v", backend)
		}
		if stats.Outbox == nil || stats.Outbox.Path != o.outboxPath() || stats.Outbox.MaxBytes == 0 {
			t.Errorf("outbox %+v, want one at %s", stats.Outbox, o.outboxPath())
		}
		if info, err := os.Stat(o.outboxPath()); err != nil || !info.IsDir() {
			t.Errorf("outbox directory: %v", err)
		}

		must(t, db.Stop())
		if stats, err = db.Stats(); err != nil || stats.Running {
			t.Errorf("after Stop: %+v, %v", stats, err)
		}
	})
}

func TestStatsWithoutOutbox(t *testing.T) {
	db := open(t, `"queue_batch": {"durable": false}`)
	stats, err := db.Stats()
	must(t, err)
	if stats.Outbox != nil {
		t.Errorf("outbox %+v, want nil", stats.Outbox)
	}
}

func TestStatsAfterClose(t *testing.T) {
	db, err := tetherdb.Open(config(t, ""))
	must(t, err)
	must(t, db.Close())
	if _, err := db.Stats(); !errors.Is(err, tetherdb.ErrInvalidArgument) {
		t.Errorf("Stats after Close: %v", err)
	}
}

// Nothing listens on port 1: a call fails at once with ErrUnavailable (the
// handle opens while its server is down: it connects on first use).
func TestUnreachableEtcdIsUnavailable(t *testing.T) {
	outbox, _ := json.Marshal(filepath.Join(t.TempDir(), "outbox"))
	db := openConfig(t, fmt.Sprintf(`{"logging": "none", "etcd": {"endpoints": ["127.0.0.1:1"], "timeout": 1}, "queue_batch": {"outbox_path": %s}}`, outbox))
	started := time.Now()
	err := db.Write("k", []byte("v"), tetherdb.Backend("etcd"))
	if !errors.Is(err, tetherdb.ErrUnavailable) || statusOf(t, err) != tetherdb.StatusUnavailable {
		t.Fatalf("write: %v", err)
	}
	if !strings.Contains(err.Error(), "etcd") {
		t.Errorf("the message does not name the backend: %v", err)
	}
	if _, err := db.Read("k"); !errors.Is(err, tetherdb.ErrUnavailable) {
		t.Errorf("read: %v, want ErrUnavailable (not ErrNotFound: nothing is known)", err)
	}
	if elapsed := time.Since(started); elapsed > 5*time.Second {
		t.Errorf("took %v", elapsed)
	}
}

// A backend the configuration has no section for is unknown, as is one it
// never heard of.
func TestBackendNotConfiguredIsUnknown(t *testing.T) {
	db := open(t, "")
	for _, backend := range []string{"etcd", "nosuch"} {
		err := db.Write("k", []byte("v"), tetherdb.Backend(backend))
		if !errors.Is(err, tetherdb.ErrUnknownBackend) || statusOf(t, err) != tetherdb.StatusUnknownBackend {
			t.Errorf("%s: %v", backend, err)
		} else if !strings.Contains(err.Error(), `"`+backend+`"`) {
			t.Errorf("the message does not name the backend: %v", err)
		}
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

// 16 goroutines write through one handle at once (run it with -race).
func TestConcurrentWrites(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		db := o.open(t, "")
		const goroutines, writes = 16, 100
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range writes {
					key := fmt.Sprintf("g%02d-%03d", g, i)
					opts := []tetherdb.Option{o.in()}
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
		for page, err := range db.Pages(64, o.in()) {
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
	})
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

// Copy from a local store to the backend under test, named "target": a
// dry run changes nothing, CopyChanged writes only what differs,
// CopyMirror deletes what the source lacks.
func TestCopy(t *testing.T) {
	onEachBackend(t, func(t *testing.T, o on) {
		dir := o.dir
		target := fmt.Sprintf(`{"engine": "local", "filepath": %q}`, dir+"/target")
		if o.backend == "etcd" {
			target = fmt.Sprintf(`{"engine": "etcd", "endpoints": [%q]}`, os.Getenv("TETHERDB_TEST_ETCD"))
		}
		db := openConfig(t, fmt.Sprintf(`{"logging": "none", "default_backend": "source",
			"queue_batch": {"outbox_path": %q},
			"backends": {"source": {"engine": "local", "filepath": %q}, "target": %s}}`,
			dir+"/outbox", dir+"/source", target))
		bucket := o.in()
		for _, key := range []string{"a", "b", "c"} {
			if err := db.Write(key, []byte(key), bucket); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Write("stale", []byte("x"), bucket, tetherdb.Backend("target")); err != nil {
			t.Fatal(err)
		}
		diff, err := db.Copy("source", "target", tetherdb.CopyChanged|tetherdb.CopyMirror|tetherdb.CopyDryRun, bucket)
		want := tetherdb.CopyReport{Copied: 3, Deleted: 1, Keys: []string{"a", "b", "c", "stale"}}
		if err != nil || !reflect.DeepEqual(diff, want) {
			t.Fatalf("dry run: %+v, %v; want %+v", diff, err, want)
		}
		if _, err := db.Read("a", bucket, tetherdb.Backend("target")); !errors.Is(err, tetherdb.ErrNotFound) {
			t.Fatalf("a dry run wrote a: %v", err)
		}
		if err := db.Write("b", []byte("changed"), bucket); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Copy("source", "target", 0, bucket, tetherdb.Prefix("a")); err != nil {
			t.Fatal(err)
		}
		push, err := db.Copy("source", "target", tetherdb.CopyChanged|tetherdb.CopyMirror, bucket)
		if err != nil || push.Copied != 2 || push.Deleted != 1 || push.Unchanged != 1 {
			t.Fatalf("push: %+v, %v", push, err)
		}
		if value, err := db.Read("b", bucket, tetherdb.Backend("target")); err != nil || string(value) != "changed" {
			t.Fatalf("b on the target: %q, %v", value, err)
		}
		if _, err := db.Copy("source", "source", 0, bucket); !errors.Is(err, tetherdb.ErrInvalidArgument) {
			t.Fatalf("a copy onto itself: %v", err)
		}
		if _, err := db.Copy("source", "target", 0, tetherdb.KeysOnly()); !errors.Is(err, tetherdb.ErrInvalidArgument) {
			t.Fatalf("KeysOnly on Copy: %v", err)
		}
	})
}
