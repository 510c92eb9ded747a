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

    // Each test of this backend: skipped without an etcd, failed without one under CI.
    const it = (name, fn) =>
      test(name, (t) => {
        if (backend === 'etcd' && !ETCD) {
          if (process.env.CI) {
            assert.fail('CI is set but TETHERDB_TEST_ETCD is not: run the tests with scripts/test_bindings.sh, which starts etcd');
          }
          t.skip('no etcd: set TETHERDB_TEST_ETCD=127.0.0.1:PORT, or run scripts/test_bindings.sh, which starts one');
          return;
        }
        fn();
      });

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
