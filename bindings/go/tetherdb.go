// Package tetherdb is the Go binding of TetherDB, a key-value library with
// one C ABI over an embedded store (local, on sled) and remote ones (etcd,
// DynamoDB). It converts types and errors and holds no storage logic: each
// method is one call into libtetherdb.
//
// The package finds the library with pkg-config (tetherdb.pc, installed by
// the repository's scripts/install.sh PREFIX): set PKG_CONFIG_PATH to
// PREFIX/lib/pkgconfig to build, and let the dynamic loader find
// libtetherdb.so.0, the library's soname, to run (LD_LIBRARY_PATH, an rpath,
// or a system directory).
//
// A *DB may be used by many goroutines at once; only Close must not overlap
// another call on it.
package tetherdb

/*
#cgo pkg-config: tetherdb
#include <stdlib.h>
#include "tetherdb.h"
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"errors"
	"iter"
	"runtime"
	"time"
	"unsafe"
)

// Version is the version of the loaded library, "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.tether_version()) }

// DB is a handle on the configured backends.
type DB struct {
	// Set to nil by Close, so that a second Close is a no-op and a call after
	// Close passes NULL, which the library rejects (ErrInvalidArgument).
	handle *C.tether_db
}

// call runs one C call and turns a failure into an *Error. The library's
// message is per OS thread, and a goroutine may move to another thread
// between two cgo calls: the goroutine stays on its thread from the call
// until the message is read.
func call(f func() C.enum_tether_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if status := f(); status != C.TETHER_OK {
		testHookBeforeMessage()
		return &Error{Status(status), C.GoString(C.tether_last_error())}
	}
	return nil
}

// testHookBeforeMessage lets the tests yield the processor where, unlocked,
// the goroutine would be most likely to move to another thread.
var testHookBeforeMessage = func() {}

// cstring is a C copy of s to free with C.free; nil for "" where the C API
// reads NULL as "" (the default backend, no bucket, no prefix).
func cstring(s string) *C.char {
	if s == "" {
		return nil
	}
	return C.CString(s)
}

// Open opens a handle from a JSON configuration; "" or "{}" open the
// embedded default, a local store in ./tetherdb_data. It starts the batch
// worker unless queue_batch.autostart is false.
func Open(configJSON string) (*DB, error) {
	config := cstring(configJSON)
	defer C.free(unsafe.Pointer(config))
	var handle *C.tether_db
	if err := call(func() C.enum_tether_status { return C.tether_open(config, &handle) }); err != nil {
		return nil, err
	}
	return &DB{handle}, nil
}

// OpenFile opens a handle from a JSON configuration file.
func OpenFile(path string) (*DB, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var handle *C.tether_db
	if err := call(func() C.enum_tether_status { return C.tether_open_file(cpath, &handle) }); err != nil {
		return nil, err
	}
	return &DB{handle}, nil
}

// Close applies every queued write, stops the worker and frees the handle,
// reporting the first queued write that failed. Closing twice is a no-op.
func (db *DB) Close() error {
	handle := db.handle
	db.handle = nil
	if handle == nil {
		return nil
	}
	return call(func() C.enum_tether_status { return C.tether_close(handle) })
}

// Start starts the queue's workers; idempotent.
func (db *DB) Start() error {
	return call(func() C.enum_tether_status { return C.tether_start(db.handle) })
}

// Stop applies every queued write, then stops the worker; idempotent.
// Queued writes fail with ErrNotRunning until Start.
func (db *DB) Stop() error {
	return call(func() C.enum_tether_status { return C.tether_stop(db.handle) })
}

// Flush waits until every write queued before it is applied and durable,
// and reports the first queued write that failed since the last Flush/Stop.
func (db *DB) Flush() error {
	return call(func() C.enum_tether_status { return C.tether_flush(db.handle) })
}

// target is the C form of a call's backend, bucket and key.
type target struct{ backend, bucket, key *C.char }

func newTarget(o options, key string) target {
	return target{cstring(o.backend), cstring(o.bucket), C.CString(key)}
}

func (t target) free() {
	C.free(unsafe.Pointer(t.backend))
	C.free(unsafe.Pointer(t.bucket))
	C.free(unsafe.Pointer(t.key))
}

// cbytes points the C API at value's bytes, which it copies before
// returning (cgo allows passing Go memory that holds no Go pointers).
func cbytes(value []byte) (*C.uint8_t, C.size_t) {
	return (*C.uint8_t)(unsafe.Pointer(unsafe.SliceData(value))), C.size_t(len(value))
}

// Write stores value under key, replacing any value. With Queued() it
// returns once the write is queued (ErrNotRunning while the worker is
// stopped). IfAbsent() and IfVersion(v) make it conditional (an error
// matching ErrConflict when the condition fails, and nothing changes),
// TTL(d) and Sliding() give the key an expiry.
func (db *DB) Write(key string, value []byte, opts ...Option) error {
	_, err := db.write("Write", key, value, opts)
	return err
}

// WriteVersioned is Write, returning the key's new version: a non-zero
// number that grows at every change of the key's value, for IfVersion. A
// queued write returns 0: it has no version before the worker applies it.
func (db *DB) WriteVersioned(key string, value []byte, opts ...Option) (uint64, error) {
	return db.write("WriteVersioned", key, value, opts)
}

// write is one tether_write_ex.
func (db *DB) write(op, key string, value []byte, opts []Option) (uint64, error) {
	o, err := collect(op, opts, writeOptions)
	if err != nil {
		return 0, err
	}
	t := newTarget(o, key)
	defer t.free()
	var flags C.uint32_t
	if o.queue {
		flags |= C.TETHER_QUEUE
	}
	if o.ifAbsent {
		flags |= C.TETHER_IF_ABSENT
	}
	if o.given&optIfVersion != 0 {
		flags |= C.TETHER_IF_VERSION
	}
	if o.sliding {
		flags |= C.TETHER_SLIDING
	}
	ptr, n := cbytes(value)
	var version C.uint64_t
	err = call(func() C.enum_tether_status {
		return C.tether_write_ex(db.handle, t.backend, t.bucket, t.key, ptr, n, flags,
			C.uint64_t(ttlMs(o.ttl)), C.uint64_t(o.ifVersion), &version)
	})
	return uint64(version), err
}

// WriteJSON stores v encoded as JSON.
func (db *DB) WriteJSON(key string, v any, opts ...Option) error {
	value, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return db.Write(key, value, opts...)
}

// Read returns the value under key, or an error matching ErrNotFound when
// the key is absent.
func (db *DB) Read(key string, opts ...Option) ([]byte, error) {
	o, err := collect("Read", opts, 0)
	if err != nil {
		return nil, err
	}
	t := newTarget(o, key)
	defer t.free()
	var value *C.uint8_t
	var n C.size_t
	err = call(func() C.enum_tether_status {
		return C.tether_read(db.handle, t.backend, t.bucket, t.key, &value, &n)
	})
	if err != nil {
		return nil, err
	}
	defer C.tether_free(value, n)
	// Clone keeps an empty value non-nil: present and empty, not absent.
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(value)), n)), nil
}

// ReadVersioned returns the value under key and its version, or an error
// matching ErrNotFound when the key is absent.
func (db *DB) ReadVersioned(key string, opts ...Option) ([]byte, uint64, error) {
	return db.readEx("ReadVersioned", key, true, opts)
}

// KeyVersion returns the version of key without copying its value, or an
// error matching ErrNotFound when the key is absent.
func (db *DB) KeyVersion(key string, opts ...Option) (uint64, error) {
	_, version, err := db.readEx("KeyVersion", key, false, opts)
	return version, err
}

// Exists tells whether key is present (and not expired), without copying
// its value.
func (db *DB) Exists(key string, opts ...Option) (bool, error) {
	_, _, err := db.readEx("Exists", key, false, opts)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// readEx is one tether_read_ex: with the value, or an existence check.
func (db *DB) readEx(op, key string, withValue bool, opts []Option) ([]byte, uint64, error) {
	o, err := collect(op, opts, 0)
	if err != nil {
		return nil, 0, err
	}
	t := newTarget(o, key)
	defer t.free()
	var value *C.uint8_t
	var n C.size_t
	valuePtr, lenPtr := &value, &n
	if !withValue {
		valuePtr, lenPtr = nil, nil
	}
	var version C.uint64_t
	err = call(func() C.enum_tether_status {
		return C.tether_read_ex(db.handle, t.backend, t.bucket, t.key, valuePtr, lenPtr, &version)
	})
	if err != nil {
		return nil, 0, err
	}
	if !withValue {
		return nil, uint64(version), nil
	}
	defer C.tether_free(value, n)
	return bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(value)), n)), uint64(version), nil
}

// ReadJSON decodes the JSON value under key into v.
func (db *DB) ReadJSON(key string, v any, opts ...Option) error {
	value, err := db.Read(key, opts...)
	if err != nil {
		return err
	}
	return json.Unmarshal(value, v)
}

// Update replaces the value under key only where the key exists, atomically;
// an error matching ErrNotFound when it is absent.
func (db *DB) Update(key string, value []byte, opts ...Option) error {
	o, err := collect("Update", opts, 0)
	if err != nil {
		return err
	}
	t := newTarget(o, key)
	defer t.free()
	ptr, n := cbytes(value)
	return call(func() C.enum_tether_status {
		return C.tether_update(db.handle, t.backend, t.bucket, t.key, ptr, n)
	})
}

// Delete removes key; an error matching ErrNotFound when there was nothing
// to remove. With IfVersion(v), only where the key's version is v: an error
// matching ErrConflict when it is another, and the key stays.
func (db *DB) Delete(key string, opts ...Option) error {
	o, err := collect("Delete", opts, deleteOptions)
	if err != nil {
		return err
	}
	t := newTarget(o, key)
	defer t.free()
	var flags C.uint32_t
	if o.given&optIfVersion != 0 {
		flags |= C.TETHER_IF_VERSION
	}
	return call(func() C.enum_tether_status {
		return C.tether_delete_ex(db.handle, t.backend, t.bucket, t.key, flags, C.uint64_t(o.ifVersion))
	})
}

// Touch sets when a present key expires: ttl from now, rounded up to whole
// milliseconds (0: never), keeping its value; a sliding key stops sliding.
// An error matching ErrNotFound when the key is absent, ErrUnsupported on a
// backend without expiry.
func (db *DB) Touch(key string, ttl time.Duration, opts ...Option) error {
	o, err := collect("Touch", opts, 0)
	if err != nil {
		return err
	}
	if ttl < 0 {
		return &Error{StatusInvalidArgument, "Touch: a negative ttl (" + ttl.String() + ")"}
	}
	t := newTarget(o, key)
	defer t.free()
	return call(func() C.enum_tether_status {
		return C.tether_touch(db.handle, t.backend, t.bucket, t.key, C.uint64_t(ttlMs(ttl)))
	})
}

// MaxShards is the most keys a counter may be split over.
const MaxShards = C.TETHER_MAX_SHARDS

// Increment adds delta to the counter under key, atomically, and returns
// its new value. The counter is stored as decimal text ("42"); an absent
// key counts from 0. A stored value that is not a decimal 64-bit integer,
// or a sum beyond one, is an error matching ErrConflict, and nothing
// changes. shards 0 or 1: the counter is key itself; from 2 to MaxShards,
// it is split over the keys KEY#shard0 … KEY#shard<shards-1>, one of which,
// at random, gets delta, and the value returned is their total, read after
// it (one read per shard: Add skips it).
func (db *DB) Increment(key string, delta int64, shards uint32, opts ...Option) (int64, error) {
	var value C.int64_t
	err := db.increment("Increment", key, delta, shards, &value, opts)
	return int64(value), err
}

// Add is Increment without reading the counter's new value: for a sharded
// counter, no read of every shard.
func (db *DB) Add(key string, delta int64, shards uint32, opts ...Option) error {
	return db.increment("Add", key, delta, shards, nil, opts)
}

// increment is one tether_increment.
func (db *DB) increment(op, key string, delta int64, shards uint32, value *C.int64_t, opts []Option) error {
	o, err := collect(op, opts, 0)
	if err != nil {
		return err
	}
	t := newTarget(o, key)
	defer t.free()
	return call(func() C.enum_tether_status {
		return C.tether_increment(db.handle, t.backend, t.bucket, t.key, C.int64_t(delta), C.uint32_t(shards), value)
	})
}

// CounterTotal returns the value of the counter under key (shards 0 or 1),
// or the sum of its shards; an absent key or shard counts 0.
func (db *DB) CounterTotal(key string, shards uint32, opts ...Option) (int64, error) {
	o, err := collect("CounterTotal", opts, 0)
	if err != nil {
		return 0, err
	}
	t := newTarget(o, key)
	defer t.free()
	var value C.int64_t
	err = call(func() C.enum_tether_status {
		return C.tether_counter_total(db.handle, t.backend, t.bucket, t.key, C.uint32_t(shards), &value)
	})
	return int64(value), err
}

// DeletePrefix deletes every key of the bucket (Bucket) that starts with
// prefix, and returns how many. Without a bucket, prefix "" is an error
// matching ErrInvalidArgument: no call deletes a whole store. Not atomic,
// except on etcd: see the C API's tether_delete_prefix.
func (db *DB) DeletePrefix(prefix string, opts ...Option) (uint64, error) {
	o, err := collect("DeletePrefix", opts, 0)
	if err != nil {
		return 0, err
	}
	backend, bucket, cprefix := cstring(o.backend), cstring(o.bucket), cstring(prefix)
	defer func() {
		for _, s := range []*C.char{backend, bucket, cprefix} {
			C.free(unsafe.Pointer(s))
		}
	}()
	var deleted C.uint64_t
	err = call(func() C.enum_tether_status {
		return C.tether_delete_prefix(db.handle, backend, bucket, cprefix, &deleted)
	})
	return uint64(deleted), err
}

// Entry is one key (without the bucket part) and its value (nil in a
// listing with KeysOnly).
type Entry struct {
	Key   string
	Value []byte
}

// Page is one page of a listing. Next is the startAfter of the following
// page, "" on the last page.
type Page struct {
	Entries []Entry
	Next    string
}

// List returns one page of at most pageSize entries, in ascending key order
// on local, starting after startAfter ("" for the first page). Options:
// Backend, Bucket, Prefix, KeysOnly.
func (db *DB) List(startAfter string, pageSize int, opts ...Option) (Page, error) {
	o, err := collect("List", opts, listOptions)
	if err != nil {
		return Page{}, err
	}
	backend, bucket, prefix, after := cstring(o.backend), cstring(o.bucket), cstring(o.prefix), cstring(startAfter)
	defer func() {
		for _, s := range []*C.char{backend, bucket, prefix, after} {
			C.free(unsafe.Pointer(s))
		}
	}()
	// A negative size becomes 0, which the library rejects with its message.
	size := C.size_t(max(pageSize, 0))
	var flags C.uint32_t
	if o.keysOnly {
		flags |= C.TETHER_KEYS_ONLY
	}
	var cpage *C.tether_page
	err = call(func() C.enum_tether_status {
		return C.tether_list_ex(db.handle, backend, bucket, prefix, after, size, flags, &cpage)
	})
	if err != nil {
		return Page{}, err
	}
	defer C.tether_page_free(cpage)

	n := C.tether_page_len(cpage)
	page := Page{Entries: make([]Entry, n)}
	for i := range page.Entries {
		page.Entries[i].Key = C.GoString(C.tether_page_key(cpage, C.size_t(i)))
		if !o.keysOnly {
			var vlen C.size_t
			value := C.tether_page_value(cpage, C.size_t(i), &vlen)
			page.Entries[i].Value = bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(value)), vlen))
		}
	}
	if next := C.tether_page_next(cpage); next != nil {
		page.Next = C.GoString(next)
	}
	return page, nil
}

// Pages iterates over every page of a listing, fetching each as the loop
// reaches it; an empty listing has no page. A failure is yielded once, with
// an empty page, and ends the iteration.
func (db *DB) Pages(pageSize int, opts ...Option) iter.Seq2[Page, error] {
	return func(yield func(Page, error) bool) {
		after := ""
		for {
			page, err := db.List(after, pageSize, opts...)
			if err != nil {
				yield(Page{}, err)
				return
			}
			// Only the last page can be short, so only an empty listing has an empty page.
			if len(page.Entries) == 0 || !yield(page, nil) || page.Next == "" {
				return
			}
			after = page.Next
		}
	}
}
