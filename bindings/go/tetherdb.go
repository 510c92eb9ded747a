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
	"iter"
	"runtime"
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
// stopped).
func (db *DB) Write(key string, value []byte, opts ...Option) error {
	o, err := collect("Write", opts, true, false)
	if err != nil {
		return err
	}
	t := newTarget(o, key)
	defer t.free()
	var flags C.uint32_t
	if o.queue {
		flags = C.TETHER_QUEUE
	}
	ptr, n := cbytes(value)
	return call(func() C.enum_tether_status {
		return C.tether_write(db.handle, t.backend, t.bucket, t.key, ptr, n, flags)
	})
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
	o, err := collect("Read", opts, false, false)
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
	o, err := collect("Update", opts, false, false)
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
// to remove.
func (db *DB) Delete(key string, opts ...Option) error {
	o, err := collect("Delete", opts, false, false)
	if err != nil {
		return err
	}
	t := newTarget(o, key)
	defer t.free()
	return call(func() C.enum_tether_status {
		return C.tether_delete(db.handle, t.backend, t.bucket, t.key)
	})
}

// Entry is one key (without the bucket part) and its value.
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
// Backend, Bucket, Prefix.
func (db *DB) List(startAfter string, pageSize int, opts ...Option) (Page, error) {
	o, err := collect("List", opts, false, true)
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
	var cpage *C.tether_page
	err = call(func() C.enum_tether_status {
		return C.tether_list(db.handle, backend, bucket, prefix, after, size, &cpage)
	})
	if err != nil {
		return Page{}, err
	}
	defer C.tether_page_free(cpage)

	n := C.tether_page_len(cpage)
	page := Page{Entries: make([]Entry, n)}
	for i := range page.Entries {
		var vlen C.size_t
		value := C.tether_page_value(cpage, C.size_t(i), &vlen)
		page.Entries[i] = Entry{
			Key:   C.GoString(C.tether_page_key(cpage, C.size_t(i))),
			Value: bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(value)), vlen)),
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
