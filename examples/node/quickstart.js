// TetherDB from Node.js: open the embedded default, write, queue a write,
// flush, read, list, close. Install the library (scripts/install.sh PREFIX)
// and this package (npm install bindings/node), then run it with PREFIX/lib on
// LD_LIBRARY_PATH, or TETHERDB_LIBRARY=PREFIX/lib/libtetherdb.so.0.
'use strict';
const tetherdb = require('tetherdb');

// No configuration: the embedded default, a local store in ./tetherdb_data.
const db = tetherdb.open();
try {
  db.write('greeting', 'hello, world', { bucket: 'messages' });

  // A queued write returns at once; the worker applies it in a batch.
  db.write('later', JSON.stringify({ level: 'info' }), { bucket: 'messages', queue: true });
  db.flush(); // waits until queued writes are applied

  console.log(`read greeting: ${db.read('greeting', { bucket: 'messages' })}`);
  try {
    db.read('absent', { bucket: 'messages' });
  } catch (e) {
    if (e.status !== tetherdb.Status.NOT_FOUND) throw e;
    console.log(`read absent: ${e.message}`);
  }

  for (const page of db.pages({ bucket: 'messages', pageSize: 10 })) {
    for (const { key, value } of page.entries) console.log(`listed ${key} = ${value}`);
  }
} finally {
  db.close(); // applies anything still queued
}
