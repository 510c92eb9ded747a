'use strict';
// Tests of the Node binding (node:test), run by scripts/test_bindings.sh
// against the installed library (TETHERDB_LIBRARY). The core tests run on
// local and on the etcd of TETHERDB_TEST_ETCD (127.0.0.1:PORT), each in a
// bucket of its own, since that etcd is shared by every binding's tests.

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, test, before, after } = require('node:test');

// The package by its name, as a user requires it (package.json's "exports"
// lets a package require itself).
const tetherdb = require('tetherdb');
const { Status, TetherError } = tetherdb;

const ETCD = process.env.TETHERDB_TEST_ETCD;

/** A fresh directory for one test's store, removed when the run ends. */
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tetherdb-node-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
function freshDir() {
  return fs.mkdtempSync(path.join(tmp, 't-'));
}

/** A configuration whose only backend is `backend`, its files in `dir`. */
function configFor(backend, dir) {
  if (backend === 'local') return { logging: 'none', local: { filepath: path.join(dir, 'data') } };
  // Without a local section the outbox would default to one per cluster
  // under ~/.local/state/tetherdb, shared by every test: it goes in `dir`.
  return {
    logging: 'none',
    etcd: { endpoints: [ETCD] },
    queue_batch: { outbox_path: path.join(dir, 'outbox') },
  };
}

/** Asserts that fn throws a TetherError of `status`. */
function throwsStatus(fn, status, message) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof TetherError, `not a TetherError: ${e}`);
    assert.equal(e.status, status);
    assert.equal(e.code, `TETHER_${Object.keys(Status)[status]}`);
    assert.ok(e.message.startsWith(`${e.code}: `), e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/**
 * `it(name, fn)` for the tests of `backend`: skipped without an etcd,
 * failed without one under CI. fn may be async.
 */
function itOn(backend) {
  return (name, fn) =>
    test(name, (t) => {
      if (backend === 'etcd' && !ETCD) {
        if (process.env.CI) {
          assert.fail('CI is set but TETHERDB_TEST_ETCD is not: run the tests with scripts/test_bindings.sh, which starts etcd');
        }
        t.skip('no etcd: set TETHERDB_TEST_ETCD=127.0.0.1:PORT, or run scripts/test_bindings.sh, which starts one');
        return undefined;
      }
      return fn();
    });
}

test('version is the package version', () => {
  assert.equal(tetherdb.version(), require('tetherdb/package.json').version);
});

for (const backend of ['local', 'etcd']) {
  describe(`on ${backend}`, () => {
    let db;
    let bucket;
    before(() => {
      if (backend === 'etcd' && !ETCD) return;
      db = tetherdb.open(configFor(backend, freshDir()));
      bucket = `node-${crypto.randomUUID()}`;
    });
    after(() => db?.close());

    const it = itOn(backend);

    it('writes and reads strings and bytes', () => {
      db.write('text', 'hello, wörld', { bucket });
      assert.equal(db.read('text', { bucket }).toString(), 'hello, wörld');
      const binary = Buffer.from([0, 1, 2, 0xfe, 0xff]);
      db.write('binary', binary, { bucket });
      assert.deepEqual(db.read('binary', { bucket }), binary);
      db.write('view', new Uint8Array([7, 8, 9]).subarray(1), { bucket });
      assert.deepEqual(db.read('view', { bucket }), Buffer.from([8, 9]));
      db.write('empty', '', { bucket });
      assert.deepEqual(db.read('empty', { bucket }), Buffer.alloc(0));
      db.write('text', 'replaced', { bucket });
      assert.equal(db.read('text', { bucket }).toString(), 'replaced');
    });

    it('an absent key is TETHER_NOT_FOUND, with the message naming it', () => {
      throwsStatus(() => db.read('absent', { bucket }), Status.NOT_FOUND, /absent/);
      throwsStatus(() => db.update('absent', 'v', { bucket }), Status.NOT_FOUND);
      throwsStatus(() => db.delete('absent', { bucket }), Status.NOT_FOUND);
    });

    it('updates and deletes', () => {
      db.write('k', 'v1', { bucket });
      db.update('k', 'v2', { bucket });
      assert.equal(db.read('k', { bucket }).toString(), 'v2');
      db.delete('k', { bucket });
      throwsStatus(() => db.read('k', { bucket }), Status.NOT_FOUND);
    });

    it('lists in pages', () => {
      const b = `${bucket}-list`;
      const keys = Array.from({ length: 25 }, (_, i) => `key-${String(i).padStart(2, '0')}`);
      for (const key of keys) db.write(key, `value of ${key}`, { bucket: b });
      db.write('other', 'x', { bucket: b });

      const first = db.list({ bucket: b, prefix: 'key-', pageSize: 10 });
      assert.equal(first.entries.length, 10);
      assert.equal(first.next, first.entries[9].key);
      const second = db.list({ bucket: b, prefix: 'key-', pageSize: 10, startAfter: first.next });
      assert.equal(second.entries.length, 10);

      const pages = [...db.pages({ bucket: b, prefix: 'key-', pageSize: 10 })];
      assert.deepEqual(pages.map((p) => p.entries.length), [10, 10, 5]);
      assert.equal(pages[2].next, null);
      const listed = pages.flatMap((p) => p.entries);
      assert.deepEqual(listed.map((e) => e.key).sort(), keys);
      for (const { key, value } of listed) assert.equal(value.toString(), `value of ${key}`);

      const all = [...db.pages({ bucket: b, pageSize: 100 })];
      assert.equal(all.length, 1);
      assert.equal(all[0].entries.length, 26);
      assert.deepEqual(db.list({ bucket: `${b}-none` }), { entries: [], next: null });
    });

    it('queues writes; flush applies them', () => {
      for (let i = 0; i < 20; i++) db.write(`queued-${i}`, `v${i}`, { bucket, queue: true });
      db.flush();
      for (let i = 0; i < 20; i++) assert.equal(db.read(`queued-${i}`, { bucket }).toString(), `v${i}`);
      const stats = db.stats();
      assert.equal(stats.running, true);
      assert.ok(stats.backends[backend].applied >= 20, JSON.stringify(stats));
      assert.equal(stats.backends[backend].pending, 0);
    });

    it('a queued write while stopped is TETHER_NOT_RUNNING', () => {
      db.stop();
      try {
        throwsStatus(() => db.write('k', 'v', { bucket, queue: true }), Status.NOT_RUNNING);
        assert.equal(db.stats().running, false);
        db.write('direct', 'still works', { bucket });
      } finally {
        db.start();
      }
      db.write('k', 'v', { bucket, queue: true });
      db.flush();
      assert.equal(db.read('k', { bucket }).toString(), 'v');
    });

    it('rejects bad arguments with TETHER_INVALID_ARGUMENT or UNKNOWN_BACKEND', () => {
      throwsStatus(() => db.write('', 'v', { bucket }), Status.INVALID_ARGUMENT, /empty/);
      throwsStatus(() => db.write('k', 'v', { bucket: 'a:b' }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.list({ bucket, pageSize: 0 }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.read('k', { backend: 'nowhere' }), Status.UNKNOWN_BACKEND, /nowhere/);
    });
  });
}

test('rejects what C cannot take with a TypeError, before calling it', () => {
  const db = tetherdb.open(configFor('local', freshDir()));
  try {
    assert.throws(() => db.write(42, 'v'), TypeError);
    assert.throws(() => db.write('k', 42), TypeError);
    assert.throws(() => db.write('a\0b', 'v'), TypeError);
    assert.throws(() => db.read('k', { bucket: 7 }), TypeError);
    assert.throws(() => db.list({ pageSize: -1 }), RangeError);
  } finally {
    db.close();
  }
});

test('open: an invalid configuration is TETHER_CONFIG', () => {
  throwsStatus(() => tetherdb.open({ bogus: true }), Status.CONFIG, /bogus/);
  throwsStatus(() => tetherdb.open('{not json'), Status.CONFIG);
});

test('openFile reads the configuration from a file', () => {
  const dir = freshDir();
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(configFor('local', dir)));
  const db = tetherdb.openFile(file);
  db.write('k', 'v');
  db.close();
  const again = tetherdb.openFile(file);
  assert.equal(again.read('k').toString(), 'v');
  again.close();
  throwsStatus(() => tetherdb.openFile(path.join(dir, 'missing.json')), Status.CONFIG, /missing/);
});

test('close applies queued writes; a second close is a no-op; calls after it fail', () => {
  const config = configFor('local', freshDir());
  const db = tetherdb.open(config);
  db.write('k', 'queued', { queue: true });
  db.close();
  db.close();
  throwsStatus(() => db.read('k'), Status.INVALID_ARGUMENT, /NULL/);
  const again = tetherdb.open(config);
  assert.equal(again.read('k').toString(), 'queued');
  again.close();
});

test('load: the library is loaded once', () => {
  const loaded = tetherdb.load(); // the same path: a no-op
  assert.ok(loaded.includes('libtetherdb.so'), loaded);
  assert.throws(() => tetherdb.load('/elsewhere/libtetherdb.so.0'), /already loaded/);
});

// --- versions, conditions, expiry, counters, keys-only listings, deleting by prefix ---

const { setTimeout: sleep } = require('node:timers/promises');

// How long a key written with a short ttl may take to read as absent: a
// bound for slow machines, not a measure (the library makes a key absent
// from its deadline on).
const EXPIRY_BOUND_MS = 30_000;

/** Polls `predicate` until it is true; fails after EXPIRY_BOUND_MS. */
async function eventually(predicate, what) {
  const giveUp = performance.now() + EXPIRY_BOUND_MS;
  while (!predicate()) {
    if (performance.now() > giveUp) assert.fail(`${what}: still not the case after ${EXPIRY_BOUND_MS} ms`);
    await sleep(20);
  }
}

/** The value under `key` as a string, or null when it is absent. */
function readOrNull(db, key, options) {
  try {
    return db.read(key, options).toString();
  } catch (e) {
    if (e.status === Status.NOT_FOUND) return null;
    throw e;
  }
}

for (const backend of ['local', 'etcd']) {
  describe(`on ${backend}: versions, conditions, expiry, counters, prefixes`, () => {
    let db;
    let bucket;
    before(() => {
      if (backend === 'etcd' && !ETCD) return;
      db = tetherdb.open(configFor(backend, freshDir()));
    });
    after(() => db?.close());
    // A bucket of each test's own.
    let n = 0;
    const it = (name, fn) =>
      itOn(backend)(name, () => {
        bucket = `node-${crypto.randomUUID()}-${n++}`;
        return fn();
      });

    it('write returns the version readVersioned and readVersion give', () => {
      const first = db.write('k', 'v1', { bucket });
      assert.equal(typeof first, 'number');
      assert.ok(first > 0);
      const { value, version } = db.readVersioned('k', { bucket });
      assert.equal(value.toString(), 'v1');
      assert.equal(version, first);
      assert.equal(db.readVersion('k', { bucket }), first);
      assert.equal(db.readVersion('absent', { bucket }), null);
      throwsStatus(() => db.readVersioned('absent', { bucket }), Status.NOT_FOUND);

      const second = db.write('k', 'v2', { bucket });
      assert.ok(second > first);
      db.update('k', 'v3', { bucket });
      assert.ok(db.readVersion('k', { bucket }) > second);
      db.delete('k', { bucket });
      assert.ok(db.write('k', 'v4', { bucket }) > second); // grows across a delete
    });

    it('ifAbsent and ifVersion: a failed condition is TETHER_CONFLICT or NOT_FOUND and writes nothing', () => {
      const version = db.write('k', 'first', { bucket, ifAbsent: true });
      throwsStatus(() => db.write('k', 'second', { bucket, ifAbsent: true }), Status.CONFLICT);
      throwsStatus(() => db.write('k', 'second', { bucket, ifVersion: version + 1 }), Status.CONFLICT);
      throwsStatus(() => db.write('absent', 'v', { bucket, ifVersion: version }), Status.NOT_FOUND);
      assert.deepEqual(db.readVersioned('k', { bucket }), { value: Buffer.from('first'), version });
      assert.equal(db.readVersion('absent', { bucket }), null);

      const next = db.write('k', 'second', { bucket, ifVersion: version });
      assert.ok(next > version);
      assert.equal(db.write('k', 'third', { bucket, ifVersion: BigInt(next) }) > next, true); // a BigInt too
      assert.equal(db.read('k', { bucket }).toString(), 'third');
    });

    it('delete with ifVersion', () => {
      const version = db.write('k', 'v', { bucket });
      throwsStatus(() => db.delete('k', { bucket, ifVersion: version + 1 }), Status.CONFLICT);
      assert.equal(db.read('k', { bucket }).toString(), 'v');
      db.delete('k', { bucket, ifVersion: version });
      throwsStatus(() => db.delete('k', { bucket, ifVersion: version }), Status.NOT_FOUND);
    });

    it('what the library refuses is TETHER_INVALID_ARGUMENT; a queued write returns no version', () => {
      throwsStatus(() => db.write('k', 'v', { bucket, ifAbsent: true, ifVersion: 1 }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.write('k', 'v', { bucket, queue: true, ifAbsent: true }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.write('k', 'v', { bucket, queue: true, ifVersion: 1 }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.write('k', 'v', { bucket, sliding: true }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.write('k', 'v', { bucket, ttlMs: 2n ** 64n - 1n }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.deletePrefix('', { backend }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.increment('k', 1, { bucket, shards: tetherdb.MAX_SHARDS + 1 }), Status.INVALID_ARGUMENT);
      assert.equal(db.readVersion('k', { bucket }), null);
      assert.equal(db.write('q', 'v', { bucket, queue: true, ttlMs: 3_600_000 }), undefined);
      db.flush();
      assert.equal(db.read('q', { bucket }).toString(), 'v');
    });

    it('a key with a ttl expires, and is absent for every call', async () => {
      db.write('long', 'v', { bucket, ttlMs: 3_600_000 });
      db.write('short', 'v', { bucket, ttlMs: 50 });
      db.write('queued', 'v', { bucket, ttlMs: 50, queue: true });
      db.write('plain', 'v', { bucket });
      db.flush();
      await eventually(() => readOrNull(db, 'short', { bucket }) === null, 'the key with a 50 ms ttl expired');
      await eventually(() => readOrNull(db, 'queued', { bucket }) === null, 'the queued key with a 50 ms ttl expired');
      assert.equal(db.readVersion('short', { bucket }), null);
      assert.deepEqual(
        db.list({ bucket, keysOnly: true }).entries.map((e) => e.key),
        ['long', 'plain'],
      );
      throwsStatus(() => db.touch('short', 60_000, { bucket }), Status.NOT_FOUND);
      db.write('short', 'again', { bucket, ifAbsent: true });
      assert.equal(db.read('long', { bucket }).toString(), 'v');
    });

    it('touch sets a deadline, and 0 removes it', async () => {
      throwsStatus(() => db.touch('absent', 60_000, { bucket }), Status.NOT_FOUND);
      db.write('k', 'v', { bucket });
      db.touch('k', 50, { bucket });
      await eventually(() => readOrNull(db, 'k', { bucket }) === null, 'the touched key expired');

      // Once touch(0) succeeded (so before the deadline), the key stays past it.
      let written;
      for (let tries = 0; ; tries++) {
        if (tries === 5) assert.fail('touch never came within the ttl of 1 s of its write, in 5 tries');
        db.write('k', 'kept', { bucket, ttlMs: 1000 });
        written = performance.now(); // after the call: the deadline is before written + 1 s
        try {
          db.touch('k', 0, { bucket });
          break;
        } catch (e) {
          if (e.status !== Status.NOT_FOUND) throw e;
        }
      }
      await sleep(Math.max(0, written + 1200 - performance.now()));
      assert.equal(db.read('k', { bucket }).toString(), 'kept');
    });

    it('a sliding ttl restarts at each read', async () => {
      // Write at w, read at r (w + 600 ms), then look at c: past w's deadline
      // (w + ttl) and before r's (r + ttl). The key is there only if the read
      // restarted its ttl. A machine too slow to keep to that order makes the
      // try inconclusive, and it is made again.
      const ttl = 1000;
      for (let tries = 0; ; tries++) {
        if (tries === 5) assert.fail('no try kept to the order write, read, look within 1 s, in 5 tries');
        db.write('k', 'v', { bucket, ttlMs: ttl, sliding: true });
        const written = performance.now();
        await sleep(0.6 * ttl);
        const readAt = performance.now();
        if (readOrNull(db, 'k', { bucket }) !== 'v') continue; // the read came after the first deadline
        await sleep(Math.max(0, written + ttl + 50 - performance.now()));
        const present = readOrNull(db, 'k', { bucket }) === 'v';
        if (performance.now() < readAt + ttl) {
          assert.ok(present, 'the sliding key expired although a read restarted its ttl');
          break;
        }
      }
    });

    it('increments and totals counters', () => {
      assert.equal(db.counterTotal('n', { bucket }), 0);
      assert.equal(db.increment('n', undefined, { bucket }), 1);
      assert.equal(db.increment('n', 41, { bucket }), 42);
      assert.equal(db.read('n', { bucket }).toString(), '42');
      assert.equal(db.increment('n', -50n, { bucket }), -8);
      assert.equal(db.counterTotal('n', { bucket }), -8);
      assert.equal(db.increment('zero', 0, { bucket }), 0);
      assert.equal(db.read('zero', { bucket }).toString(), '0');

      // Beyond Number.MAX_SAFE_INTEGER, koffi gives a BigInt.
      db.write('big', String(2n ** 62n), { bucket });
      assert.equal(db.counterTotal('big', { bucket }), 2n ** 62n);
      assert.equal(db.increment('big', 1, { bucket }), 2n ** 62n + 1n);

      for (let i = 1; i <= 20; i++) assert.equal(db.increment('visits', 1, { bucket, shards: 4 }), i);
      assert.equal(db.counterTotal('visits', { bucket, shards: 4 }), 20);
      assert.equal(db.counterTotal('visits', { bucket }), 0); // a sharded counter never writes the key
      const shards = db.list({ bucket, prefix: 'visits', keysOnly: true }).entries.map((e) => e.key);
      assert.ok(shards.length > 0 && shards.every((k) => /^visits#shard[0-3]$/.test(k)), shards.join());
    });

    it('a counter over what is no number, or beyond 64 bits, is TETHER_CONFLICT', () => {
      db.write('words', 'not a number', { bucket });
      db.write('max', String(2n ** 63n - 1n), { bucket });
      throwsStatus(() => db.increment('words', 1, { bucket }), Status.CONFLICT, /not a number/);
      throwsStatus(() => db.counterTotal('words', { bucket }), Status.CONFLICT);
      throwsStatus(() => db.increment('max', 1, { bucket }), Status.CONFLICT);
      assert.equal(db.read('words', { bucket }).toString(), 'not a number');
    });

    it('lists keys alone, by prefix', () => {
      for (const key of ['a1', 'a2', 'a3', 'b1']) db.write(key, `value of ${key}`, { bucket });
      assert.deepEqual(db.list({ bucket, keysOnly: true }), {
        entries: [{ key: 'a1' }, { key: 'a2' }, { key: 'a3' }, { key: 'b1' }],
        next: null,
      });
      const first = db.list({ bucket, prefix: 'a', pageSize: 2, keysOnly: true });
      assert.deepEqual(first, { entries: [{ key: 'a1' }, { key: 'a2' }], next: 'a2' });
      const pages = [...db.pages({ bucket, prefix: 'a', pageSize: 2, keysOnly: true })];
      assert.deepEqual(pages.flatMap((p) => p.entries.map((e) => e.key)), ['a1', 'a2', 'a3']);
      // Without a bucket, keys as stored: bucket:key.
      assert.deepEqual(
        db.list({ prefix: `${bucket}:a`, keysOnly: true }).entries.map((e) => e.key),
        [`${bucket}:a1`, `${bucket}:a2`, `${bucket}:a3`],
      );
    });

    it('deletes by prefix and counts', () => {
      for (const key of ['2023-12', '2024-01', '2024-02', '2024-03']) db.write(key, 'v', { bucket });
      db.write('2024-01', 'other bucket', { bucket: `${bucket}X` });
      assert.equal(db.deletePrefix('2024-', { bucket }), 3);
      assert.deepEqual(db.list({ bucket, keysOnly: true }).entries, [{ key: '2023-12' }]);
      assert.equal(db.read('2024-01', { bucket: `${bucket}X` }).toString(), 'other bucket');
      assert.equal(db.deletePrefix('2024-', { bucket }), 0);
      assert.equal(db.deletePrefix(`${bucket}X:`), 1); // without a bucket: the stored keys' prefix
      assert.equal(db.deletePrefix('', { bucket }), 1); // '': the whole bucket
      assert.deepEqual(db.list({ bucket }), { entries: [], next: null });
    });

    it('rejects integers C cannot take, before calling it', () => {
      assert.throws(() => db.write('k', 'v', { bucket, ttlMs: -1 }), RangeError);
      assert.throws(() => db.write('k', 'v', { bucket, ttlMs: 1.5 }), RangeError);
      assert.throws(() => db.write('k', 'v', { bucket, ttlMs: 2n ** 64n }), RangeError);
      assert.throws(() => db.write('k', 'v', { bucket, ttlMs: '10' }), TypeError);
      assert.throws(() => db.write('k', 'v', { bucket, ifVersion: -1 }), RangeError);
      assert.throws(() => db.increment('k', 2n ** 63n, { bucket }), RangeError);
      assert.throws(() => db.increment('k', 1, { bucket, shards: -1 }), RangeError);
      assert.throws(() => db.touch('k', undefined, { bucket }), TypeError);
      assert.equal(db.readVersion('k', { bucket }), null);
    });
  });
}

for (const backend of ['local', 'etcd']) {
  itOn(backend)(`copy from a local store to ${backend}: dry run, changed, mirror`, () => {
    const dir = freshDir();
    const target = backend === 'local'
      ? { engine: 'local', filepath: path.join(dir, 'target') }
      : { engine: 'etcd', endpoints: [ETCD] };
    const db = tetherdb.open({
      logging: 'none',
      default_backend: 'source',
      queue_batch: { outbox_path: path.join(dir, 'outbox') },
      backends: { source: { engine: 'local', filepath: path.join(dir, 'source') }, target },
    });
    try {
      const bucket = `node-copy-${crypto.randomUUID()}`;
      for (const key of ['a', 'b', 'c']) db.write(key, key, { bucket });
      db.write('stale', 'x', { bucket, backend: 'target' });
      const diff = db.copy('source', 'target', { bucket, changed: true, mirror: true, dryRun: true });
      assert.deepEqual(diff, { copied: 3, deleted: 1, unchanged: 0, keys: ['a', 'b', 'c', 'stale'] });
      throwsStatus(() => db.read('a', { bucket, backend: 'target' }), Status.NOT_FOUND);
      assert.deepEqual(db.copy('source', 'target', { bucket, prefix: 'a' }).keys, ['a']);
      const push = db.copy('source', 'target', { bucket, changed: true, mirror: true });
      assert.deepEqual(push, { copied: 2, deleted: 1, unchanged: 1, keys: ['b', 'c', 'stale'] });
      throwsStatus(() => db.copy('source', 'source', { bucket }), Status.INVALID_ARGUMENT);
      throwsStatus(() => db.copy('source', 'nowhere', { bucket }), Status.UNKNOWN_BACKEND);
    } finally {
      db.close();
    }
  });
}
