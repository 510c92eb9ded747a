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
// The flags of tetherdb.h.
const TETHER_QUEUE = 1;
const TETHER_IF_ABSENT = 2;
const TETHER_IF_VERSION = 4;
const TETHER_SLIDING = 8;
const TETHER_KEYS_ONLY = 1;
const TETHER_COPY_CHANGED = 1;
const TETHER_COPY_MIRROR = 2;
const TETHER_COPY_DRY_RUN = 4;
/** The most keys a counter may be split over (TETHER_MAX_SHARDS). */
const MAX_SHARDS = 1024;

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
    update: lib.func('tether_update', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'const uint8_t *', 'size_t',
    ]),
    read: lib.func('tether_read', 'int', [
      db, 'const char *', 'const char *', 'const char *', koffi.out('void **'), koffi.out('size_t *'),
    ]),
    free: lib.func('void tether_free(void *value, size_t len)'),
    writeEx: lib.func('tether_write_ex', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'const uint8_t *', 'size_t', 'uint32_t',
      'uint64_t', 'uint64_t', koffi.out('uint64_t *'),
    ]),
    readEx: lib.func('tether_read_ex', 'int', [
      db, 'const char *', 'const char *', 'const char *', koffi.out('void **'), koffi.out('size_t *'),
      koffi.out('uint64_t *'),
    ]),
    deleteEx: lib.func('tether_delete_ex', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'uint32_t', 'uint64_t',
    ]),
    touch: lib.func('tether_touch', 'int', [db, 'const char *', 'const char *', 'const char *', 'uint64_t']),
    increment: lib.func('tether_increment', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'int64_t', 'uint32_t', koffi.out('int64_t *'),
    ]),
    counterTotal: lib.func('tether_counter_total', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'uint32_t', koffi.out('int64_t *'),
    ]),
    listEx: lib.func('tether_list_ex', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'const char *', 'size_t', 'uint32_t',
      koffi.out('void **'),
    ]),
    deletePrefix: lib.func('tether_delete_prefix', 'int', [
      db, 'const char *', 'const char *', 'const char *', koffi.out('uint64_t *'),
    ]),
    pageLen: lib.func('tether_page_len', 'size_t', [page]),
    pageKey: lib.func('tether_page_key', 'const char *', [page, 'size_t']),
    pageValue: lib.func('tether_page_value', 'void *', [page, 'size_t', koffi.out('size_t *')]),
    pageNext: lib.func('tether_page_next', 'const char *', [page]),
    pageFree: lib.func('tether_page_free', 'void', [page]),
    stats: lib.func('tether_stats', 'int', [db, koffi.out('void **')]),
    copy: lib.func('tether_copy', 'int', [
      db, 'const char *', 'const char *', 'const char *', 'const char *', 'uint32_t',
      koffi.out('void **'),
    ]),
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

const U32_MAX = 2n ** 32n - 1n;
const U64_MAX = 2n ** 64n - 1n;
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/**
 * An integer for a C integer of the range [min, max]: a Number that is a
 * safe integer, or a BigInt; koffi would pass one beyond the C type's range
 * as an undefined value.
 */
function integer(value, what, min, max) {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`${what} must be a whole number, got ${value}`);
  } else if (typeof value !== 'bigint') {
    throw new TypeError(`${what} must be a number or a BigInt, got ${typeof value}`);
  }
  if (BigInt(value) < min || BigInt(value) > max) {
    throw new RangeError(`${what} must be from ${min} to ${max}, got ${value}`);
  }
  return value;
}

/** The flags, ttl_ms and version of tether_write_ex; the library refuses combinations it cannot take. */
function writeFlags({ queue = false, ifAbsent = false, ifVersion, ttlMs = 0, sliding = false }) {
  const flags =
    (queue ? TETHER_QUEUE : 0) |
    (ifAbsent ? TETHER_IF_ABSENT : 0) |
    (sliding ? TETHER_SLIDING : 0) |
    (ifVersion === undefined || ifVersion === null ? 0 : TETHER_IF_VERSION);
  const version = flags & TETHER_IF_VERSION ? integer(ifVersion, 'ifVersion', 0n, U64_MAX) : 0;
  return { flags, ttlMs: integer(ttlMs, 'ttlMs', 0n, U64_MAX), version };
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
   * Stores `value` (a string as UTF-8, or bytes) under `key` and returns the
   * key's new version (undefined for a queued write). Options: `backend`
   * (default: the default backend), `bucket`, `queue` (hand the write to the
   * queue: it returns once queued, and failures are reported by the next
   * flush(), stop() or close()), `ttlMs` (the key is absent from that many
   * milliseconds on; 0, the default, for no expiry, which also clears an
   * earlier one), `sliding` (with `ttlMs`: each read restarts it), `ifAbsent`
   * (only where the key is absent: else TETHER_CONFLICT), `ifVersion` (only
   * where the key's version is this one: else TETHER_CONFLICT, or
   * TETHER_NOT_FOUND where the key is absent). A failed condition writes nothing.
   */
  write(key, value, options = {}) {
    const { backend, bucket } = options;
    const { flags, ttlMs, version } = writeFlags(options);
    const data = bytes(value);
    const out = [0];
    check(
      lib().writeEx(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        data, data.length, flags, ttlMs, version, flags & TETHER_QUEUE ? null : out,
      ),
    );
    return flags & TETHER_QUEUE ? undefined : out[0];
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

  /**
   * The value under `key` and its version, `{ value, version }` (value a
   * Buffer, a copy); TETHER_NOT_FOUND when it is absent.
   */
  readVersioned(key, { backend, bucket } = {}) {
    const f = lib();
    const value = [null];
    const len = [0];
    const version = [0];
    check(
      f.readEx(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        value, len, version,
      ),
    );
    try {
      return { value: copyOut(value[0], len[0]), version: version[0] };
    } finally {
      f.free(value[0], len[0]);
    }
  }

  /**
   * The version of `key`, or null when it is absent: an existence check,
   * which reads no value (a sliding ttl restarts, as on a read).
   */
  readVersion(key, { backend, bucket } = {}) {
    const version = [0];
    const status = lib().readEx(
      this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
      null, null, version,
    );
    if (status === Status.NOT_FOUND) return null;
    check(status);
    return version[0];
  }

  /**
   * Deletes `key`; TETHER_NOT_FOUND when it is absent. Option `ifVersion`:
   * only where the key's version is this one, else TETHER_CONFLICT.
   */
  delete(key, { backend, bucket, ifVersion } = {}) {
    const conditional = ifVersion !== undefined && ifVersion !== null;
    check(
      lib().deleteEx(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        conditional ? TETHER_IF_VERSION : 0, conditional ? integer(ifVersion, 'ifVersion', 0n, U64_MAX) : 0,
      ),
    );
  }

  /**
   * Sets a present key to expire `ttlMs` milliseconds from now, keeping its
   * value; 0 removes its deadline. A sliding key stops sliding.
   * TETHER_NOT_FOUND when the key is absent.
   */
  touch(key, ttlMs, { backend, bucket } = {}) {
    check(
      lib().touch(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        integer(ttlMs, 'ttlMs', 0n, U64_MAX),
      ),
    );
  }

  /**
   * Adds `delta` (default 1; negative or 0 too) to the counter under `key`,
   * atomically, and returns its new value. The counter is stored as decimal
   * text ("42"); an absent key counts from 0. Option `shards` (2 to
   * MAX_SHARDS) spreads it over the keys `KEY#shard0`...; the value returned
   * is then the total. TETHER_CONFLICT when the stored value is not a
   * decimal 64-bit integer or the sum is beyond one.
   */
  increment(key, delta = 1, { backend, bucket, shards = 0 } = {}) {
    const out = [0];
    check(
      lib().increment(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        integer(delta, 'delta', I64_MIN, I64_MAX), integer(shards, 'shards', 0n, U32_MAX), out,
      ),
    );
    return out[0];
  }

  /** The counter's value: the key's, or with `shards` the sum of its shards; 0 when absent. */
  counterTotal(key, { backend, bucket, shards = 0 } = {}) {
    const out = [0];
    check(
      lib().counterTotal(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), required(key, 'key'),
        integer(shards, 'shards', 0n, U32_MAX), out,
      ),
    );
    return out[0];
  }

  /**
   * Deletes every key of `bucket` that starts with `prefix` ('' for all of
   * the bucket's keys) and returns how many it deleted: exactly the keys
   * list() lists with that bucket and prefix. Neither a bucket nor a prefix
   * is TETHER_INVALID_ARGUMENT: no call empties a whole store. Not atomic,
   * except on etcd.
   */
  deletePrefix(prefix, { backend, bucket } = {}) {
    const out = [0];
    check(
      lib().deletePrefix(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), cstring(prefix, 'prefix'), out,
      ),
    );
    return out[0];
  }

  /**
   * One page of keys and values: `{ entries: [{ key, value }], next }`, where
   * `value` is a Buffer and `next` the `startAfter` of the next page, null on
   * the last. Options: `backend`, `bucket`, `prefix`, `startAfter`,
   * `pageSize` (default 100), `keysOnly` (entries are `{ key }` alone, and
   * the backend fetches no values where it can avoid it).
   */
  list({ backend, bucket, prefix, startAfter, pageSize: size = 100, keysOnly = false } = {}) {
    const f = lib();
    const out = [null];
    check(
      f.listEx(
        this.#handle, cstring(backend, 'backend'), cstring(bucket, 'bucket'), cstring(prefix, 'prefix'),
        cstring(startAfter, 'startAfter'), pageSize(size), keysOnly ? TETHER_KEYS_ONLY : 0, out,
      ),
    );
    const page = out[0];
    try {
      const entries = [];
      for (let i = 0, n = f.pageLen(page); i < n; i++) {
        if (keysOnly) {
          entries.push({ key: f.pageKey(page, i) });
          continue;
        }
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

  /**
   * Copies the keys of `bucket` starting with `prefix` from the backend
   * `from` to the backend `to` of this handle, with their remaining ttls
   * (tether_copy), and returns its report: `{ copied, deleted, unchanged,
   * keys }`. Options: `bucket`, `prefix`, `changed` (only keys whose value
   * differs), `mirror` (also delete the target's keys the source lacks),
   * `dryRun` (change nothing, report what would change).
   */
  copy(from, to, { bucket, prefix, changed = false, mirror = false, dryRun = false } = {}) {
    const f = lib();
    const flags =
      (changed ? TETHER_COPY_CHANGED : 0) | (mirror ? TETHER_COPY_MIRROR : 0) | (dryRun ? TETHER_COPY_DRY_RUN : 0);
    const out = [null];
    check(
      f.copy(
        this.#handle, cstring(from, 'from'), cstring(to, 'to'), cstring(bucket, 'bucket'),
        cstring(prefix, 'prefix'), flags, out,
      ),
    );
    try {
      return JSON.parse(koffi.decode(out[0], 'char', -1));
    } finally {
      f.freeString(out[0]);
    }
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

module.exports = { open, openFile, load, version, Status, TetherError, DB, MAX_SHARDS };
