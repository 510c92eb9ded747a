package tetherdb

/*
#include <stdlib.h>
#include "tetherdb.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
)

// Stats is what the queue's workers have done and what waits for them, as
// tether_stats reports it. Counts are of writes since the handle opened.
type Stats struct {
	// Running tells whether the workers run (Start) or are stopped (Stop).
	Running bool `json:"running"`
	// Outbox is the durable outbox of queued writes; nil when
	// queue_batch.durable is false.
	Outbox *OutboxStats `json:"outbox"`
	// Backends holds one entry per configured backend, by name.
	Backends map[string]BackendStats `json:"backends"`
}

// OutboxStats describes the on-disk outbox of queued writes.
type OutboxStats struct {
	Path     string `json:"path"`
	Bytes    uint64 `json:"bytes"`     // keys and values it holds now
	MaxBytes uint64 `json:"max_bytes"` // queue_batch.outbox_max_bytes
	Sync     bool   `json:"sync"`      // queue_batch.sync
}

// BackendStats is one backend's worker.
type BackendStats struct {
	Queued  uint64 `json:"queued"`  // writes queued
	Applied uint64 `json:"applied"` // writes applied
	Retried uint64 `json:"retried"` // each write sent again, counted each time
	Failed  uint64 `json:"failed"`  // writes that failed for good
	Batches uint64 `json:"batches"` // batches sent, retries included
	// Pending counts the writes queued and not yet applied or reported,
	// outbox included.
	Pending         uint64 `json:"pending"`
	OldestPendingMs uint64 `json:"oldest_pending_ms"`
	// UnreachableMs is 0 and LastError nil while the backend answers.
	UnreachableMs uint64  `json:"unreachable_ms"`
	LastError     *string `json:"last_error"`
}

// Stats returns the handle's statistics (tether_stats), decoded.
func (db *DB) Stats() (Stats, error) {
	var raw *C.char
	if err := call(func() C.enum_tether_status { return C.tether_stats(db.handle, &raw) }); err != nil {
		return Stats{}, err
	}
	defer C.tether_free_string(raw)
	var stats Stats
	if err := json.Unmarshal([]byte(C.GoString(raw)), &stats); err != nil {
		return Stats{}, fmt.Errorf("tetherdb: decoding tether_stats: %w", err)
	}
	return stats, nil
}
