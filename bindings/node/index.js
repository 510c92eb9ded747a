'use strict';
// TetherDB for Node.js: koffi over the C ABI of libtetherdb (include/tetherdb.h).
// It converts types and errors and holds no storage logic: each method is one
// call into the library, made synchronously on the calling thread, so that
// tether_last_error() (per thread) is read on the thread whose call failed.
//
// The library is loaded on first use: the file TETHERDB_LIBRARY names, else
// libtetherdb.so.MAJOR (the soname of this package's major version) from the
// dynamic loader's path (LD_LIBRARY_PATH, /etc/ld.so.conf, ...); load(path)
// before the first open chooses another file.

const koffi = require('koffi');
const { version: VERSION } = require('./package.json');

const MAJOR = VERSION.split('.')[0];
const SONAME = `libtetherdb.so.${MAJOR}`;

/** The values of enum tether_status (tetherdb.h), by name. */
const Status = Object.freeze({
  OK: 0,
  NOT_FOUND: 1,
  INVALID_ARGUMENT: 2,
  CONFIG: 3,
  UNKNOWN_BACKEND: 4,
  UNAVAILABLE: 5,
  TOO_LARGE: 6,
  NOT_RUNNING: 7,
  CONFLICT: 8,
  IO: 9,
  INTERNAL: 10,
  UNSUPPORTED: 11,
});
const STATUS_NAMES = Object.keys(Status);
const TETHER_QUEUE = 1;

/**
 * A failed call: `status` is the tether_status (a value of Status), `code`
 * its name as tether_status_name() spells it ('TETHER_NOT_FOUND'), and the
 * message is that name and tether_last_error(), which names the function,
 * the backend, the key and the cause.
 */
class TetherError extends Error {
  constructor(status, detail) {
    const code =
      status >= 0 && status < STATUS_NAMES.length
        ? `TETHER_${STATUS_NAMES[status]}`
        : `TETHER_STATUS_${status}`;
    super(`${code}: ${detail}`);
    this.name = 'TetherError';
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

let native = null;

/**
 * Loads the library from `path` (default: TETHERDB_LIBRARY, else the
 * soname) and declares its functions; returns the path it loaded. Only
 * before the first call that needs the library, or again with the same path.
 */
function load(path = process.env.TETHERDB_LIBRARY || SONAME) {
  if (native) {
    if (native.path !== path) {
      throw new Error(`tetherdb: ${native.path} is already loaded; cannot load ${path}`);
    }
    return path;
  }
  let lib;
  try {
    lib = koffi.load(path);
  } catch (e) {
    throw new Error(
      `tetherdb: cannot load ${path} (${e.message}); install the library (scripts/install.sh ` +
        `PREFIX) and put PREFIX/lib on LD_LIBRARY_PATH, or set TETHERDB_LIBRARY to its path`,
    );
  }
  // Opaque handles: koffi passes and returns them as pointers.
  const db = koffi.pointer(koffi.opaque('tether_db'));
  const page = koffi.pointer(koffi.opaque('tether_page'));
  const f = {
    version: lib.func('const char *tether_version(void)'),
    lastError: lib.func('const char *tether_last_error(void)'),
    open: lib.func('int tether_open(const char *config_json, _Out_ void **out_db)'),
    openFile: lib.func('int tether_open_file(const char *path, _Out_ void **out_db)'),
    start: lib.func('tether_start', 'int', [db]),
    stop: lib.func('tether_stop', 'int', [db]),
    flush: lib.func('tether_flush', 'int', [db]),
    close: lib.func('tether_close', 'int', [db]),
    write: lib.func('tether_write', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'const uint8_t *', 'size_t', 'uint32_t',
    ]),
    update: lib.func('tether_update', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'const uint8_t *', 'size_t',
    ]),
    read: lib.func('tether_read', 'int', [
      db, 'const char *', 'const char *', 'const char *', koffi.out('void **'), koffi.out('size_t *'),
    ]),
    free: lib.func('void tether_free(void *value, size_t len)'),
    delete: lib.func('tether_delete', 'int', [db, 'const char *', 'const char *', 'const char *']),
    list: lib.func('tether_list', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'const char *', 'size_t', koffi.out('void **'),
    ]),
    pageLen: lib.func('tether_page_len', 'size_t', [page]),
    pageKey: lib.func('tether_page_key', 'const char *', [page, 'size_t']),
    pageValue: lib.func('tether_page_value', 'void *', [page, 'size_t', koffi.out('size_t *')]),
    pageNext: lib.func('tether_page_next', 'const char *', [page]),
    pageFree: lib.func('tether_page_free', 'void', [page]),
    stats: lib.func('tether_stats', 'int', [db, koffi.out('void **')]),
    freeString: lib.func('void tether_free_string(void *string)'),
  };
  const loaded = f.version();
  if (loaded.split('.')[0] !== MAJOR) {
    throw new Error(`tetherdb: ${path} is TetherDB ${loaded}; this package needs ${MAJOR}.x`);
  }
  native = { path, f };
  return path;
}

function lib() {
  if (!native) load();
  return native.f;
}

/** Throws a TetherError for a failed call; the message is read at once, on this thread. */
function check(status) {
  if (status !== Status.OK) throw new TetherError(status, lib().lastError());
}

/** A C string argument: null for undefined, null or '' (the default backend, no bucket, ...). */
function cstring(value, what) {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string, got ${typeof value}`);
  if (value.includes('\0')) throw new TypeError(`${what} must not contain NUL characters`);
  return value;
}

/** A required C string argument, passed as it is: the library rejects '' as a key. */
function required(value, what) {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string, got ${typeof value}`);
  if (value.includes('\0')) throw new TypeError(`${what} must not contain NUL characters`);
  return value;
}

/** A value's bytes: a string as UTF-8, a Buffer or other ArrayBuffer view as it is. */
function bytes(value) {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  throw new TypeError('value must be a string, a Buffer, a TypedArray or an ArrayBuffer');
}

/** A copy of `len` bytes at `ptr`, which the caller still owns. */
function copyOut(ptr, len) {
  if (len === 0) return Buffer.alloc(0);
  return Buffer.from(new Uint8Array(koffi.view(ptr, len)));
}

function pageSize(n) {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`pageSize must be a whole number, got ${n}`);
  return n;
}

/** A handle on the configured backends, from open() or openFile(); close() it. */
class DB {
  #handle;

  /** Use open() or openFile(). */
  constructor(handle) {
    this.#handle = handle;
  }

  /** Waits until every write queued before the call is applied and durable. Blocks the thread. */
  flush() {
    check(lib().flush(this.#handle));
  }

  /** Starts the workers that apply queued writes (open starts them unless queue_batch.autostart is false). */
  start() {
    check(lib().start(this.#handle));
  }

  /** Applies every queued write, then stops the workers: a queued write then fails with TETHER_NOT_RUNNING. */
  stop() {
    check(lib().stop(this.#handle));
  }

  /**
   * Applies queued writes, stops the workers and frees the handle; a second
   * close() is a no-op, and any other call after it fails with
   * TETHER_INVALID_ARGUMENT. The handle is freed even when it throws.
   */
  close() {
    if (this.#handle === null) return;
    const handle = this.#handle;
    this.#handle = null;
    check(lib().close(handle));
  }

  /**
   * Stores `value` (a string as UTF-8, or bytes) under `key`. Options:
   * `backend` (default: the default backend), `bucket`, `queue` (hand the
   * write to the queue: it returns once queued, and failures are reported by
   * the next flush(), stop() or close()).
   */
  write(key, value, { backend, bucket, queue = false } = {}) {
    const data = bytes(value);
    check(
      lib().write(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        data, data.length, queue ? TETHER_QUEUE : 0,
      ),
    );
  }

  /** Replaces the value of an existing key; TETHER_NOT_FOUND when it is absent. */
  update(key, value, { backend, bucket } = {}) {
    const data = bytes(value);
    check(
      lib().update(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        data, data.length,
      ),
    );
  }

  /** The value under `key`, as a Buffer (a copy); TETHER_NOT_FOUND when it is absent. */
  read(key, { backend, bucket } = {}) {
    const f = lib();
    const value = [null];
    const len = [0];
    check(f.read(this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'), value, len));
    try {
      return copyOut(value[0], len[0]);
    } finally {
      f.free(value[0], len[0]);
    }
  }

  /** Deletes `key`; TETHER_NOT_FOUND when it is absent. */
  delete(key, { backend, bucket } = {}) {
    check(lib().delete(this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key')));
  }

  /**
   * One page of keys and values: `{ entries: [{ key, value }], next }`, where
   * `value` is a Buffer and `next` the `startAfter` of the next page, null on
   * the last. Options: `backend`, `bucket`, `prefix`, `startAfter`,
   * `pageSize` (default 100).
   */
  list({ backend, bucket, prefix, startAfter, pageSize: size = 100 } = {}) {
    const f = lib();
    const out = [null];
    check(
      f.list(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), cstring(prefix, 'prefix'),
        cstring(startAfter, 'startAfter'), pageSize(size), out,
      ),
    );
    const page = out[0];
    try {
      const entries = [];
      for (let i = 0, n = f.pageLen(page); i < n; i++) {
        const len = [0];
        const value = f.pageValue(page, i, len);
        entries.push({ key: f.pageKey(page, i), value: copyOut(value, len[0]) });
      }
      return { entries, next: f.pageNext(page) };
    } finally {
      f.pageFree(page);
    }
  }

  /** Every page, as list() returns them, from the first to the last. */
  *pages({ startAfter, ...options } = {}) {
    let after = startAfter;
    do {
      const page = this.list({ ...options, startAfter: after });
      yield page;
      after = page.next;
    } while (after !== null);
  }

  /** tether_stats as an object: `{ running, outbox, backends: { name: { queued, applied, pending, ... } } }`. */
  stats() {
    const f = lib();
    const out = [null];
    check(f.stats(this.#handle, out));
    try {
      return JSON.parse(koffi.decode(out[0], 'char', -1));
    } finally {
      f.freeString(out[0]);
    }
  }
}

function opened(fn, arg) {
  const out = [null];
  check(fn(arg, out));
  return new DB(out[0]);
}

/**
 * Opens a handle from a configuration (see docs/configuration.md): an
 * object, JSON text, or nothing for the embedded default, a local store in
 * ./tetherdb_data.
 */
function open(config) {
  const json = config === undefined || config === null || typeof config === 'string'
    ? config
    : JSON.stringify(config);
  return opened(lib().open, cstring(json, 'config'));
}

/** Opens a handle from a JSON configuration file. */
function openFile(path) {
  return opened(lib().openFile, required(path, 'path'));
}

/** The loaded library's version, "MAJOR.MINOR.PATCH". */
function version() {
  return lib().version();
}

module.exports = { open, openFile, load, version, Status, TetherError, DB };
