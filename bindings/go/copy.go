package tetherdb

/*
#include <stdlib.h>
#include "tetherdb.h"
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"unsafe"
)

// CopyFlag changes what Copy does beyond copying every key.
type CopyFlag uint32

const (
	// CopyChanged copies only keys the target lacks or holds with another
	// value (push, pull).
	CopyChanged CopyFlag = C.TETHER_COPY_CHANGED
	// CopyMirror also deletes the target's keys that the source lacks.
	CopyMirror CopyFlag = C.TETHER_COPY_MIRROR
	// CopyDryRun changes nothing: the report says what would change (diff).
	CopyDryRun CopyFlag = C.TETHER_COPY_DRY_RUN
)

// CopyReport is what Copy did, or with CopyDryRun would do.
type CopyReport struct {
	Copied    uint64   `json:"copied"`
	Deleted   uint64   `json:"deleted"`
	Unchanged uint64   `json:"unchanged"`
	Keys      []string `json:"keys"` // the first 1,000 keys copied or deleted
}

// Copy copies the keys of a bucket (Bucket), starting with a prefix
// (Prefix), from the backend named from to the backend named to of this
// handle, with their remaining TTLs (tether_copy). flags: 0, or CopyChanged,
// CopyMirror and CopyDryRun or-ed together.
func (db *DB) Copy(from, to string, flags CopyFlag, opts ...Option) (CopyReport, error) {
	o, err := collect("Copy", opts, optPrefix)
	if err != nil {
		return CopyReport{}, err
	}
	cfrom, cto, bucket, prefix := cstring(from), cstring(to), cstring(o.bucket), cstring(o.prefix)
	defer func() {
		for _, s := range []*C.char{cfrom, cto, bucket, prefix} {
			C.free(unsafe.Pointer(s))
		}
	}()
	var raw *C.char
	err = call(func() C.enum_tether_status {
		return C.tether_copy(db.handle, cfrom, cto, bucket, prefix, C.uint32_t(flags), &raw)
	})
	if err != nil {
		return CopyReport{}, err
	}
	defer C.tether_free_string(raw)
	var report CopyReport
	if err := json.Unmarshal([]byte(C.GoString(raw)), &report); err != nil {
		return CopyReport{}, fmt.Errorf("tetherdb: decoding tether_copy: %w", err)
	}
	return report, nil
}
