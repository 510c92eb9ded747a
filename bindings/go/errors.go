package tetherdb

/*
#include "tetherdb.h"
*/
import "C"

import "strconv"

// Status is the library's tether_status. A Status is also an error: the
// Err* sentinels below are Statuses, and an *Error unwraps to its Status, so
// that errors.Is(err, ErrNotFound) tests the status of any failed call.
type Status int

// The values of the C enum tether_status.
const (
	StatusOK              Status = C.TETHER_OK
	StatusNotFound        Status = C.TETHER_NOT_FOUND
	StatusInvalidArgument Status = C.TETHER_INVALID_ARGUMENT
	StatusConfig          Status = C.TETHER_CONFIG
	StatusUnknownBackend  Status = C.TETHER_UNKNOWN_BACKEND
	StatusUnavailable     Status = C.TETHER_UNAVAILABLE
	StatusTooLarge        Status = C.TETHER_TOO_LARGE
	StatusNotRunning      Status = C.TETHER_NOT_RUNNING
	StatusConflict        Status = C.TETHER_CONFLICT
	StatusIO              Status = C.TETHER_IO
	StatusInternal        Status = C.TETHER_INTERNAL
	StatusUnsupported     Status = C.TETHER_UNSUPPORTED
)

// Sentinels for errors.Is, one per failure status.
var (
	ErrNotFound        error = StatusNotFound
	ErrInvalidArgument error = StatusInvalidArgument
	ErrConfig          error = StatusConfig
	ErrUnknownBackend  error = StatusUnknownBackend
	ErrUnavailable     error = StatusUnavailable
	ErrTooLarge        error = StatusTooLarge
	ErrNotRunning      error = StatusNotRunning
	ErrConflict        error = StatusConflict
	ErrIO              error = StatusIO
	ErrInternal        error = StatusInternal
	ErrUnsupported     error = StatusUnsupported
)

// String is the C name of the status, e.g. "TETHER_NOT_FOUND".
func (s Status) String() string {
	// tether_status_name accepts only the enum's values.
	if s < StatusOK || s > StatusUnsupported {
		return "Status(" + strconv.Itoa(int(s)) + ")"
	}
	return C.GoString(C.tether_status_name(C.enum_tether_status(s)))
}

func (s Status) Error() string { return s.String() }

// Error is a failed call: its status and the library's message, which names
// the function, the backend, the key and the cause.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

// Unwrap makes errors.Is(err, ErrNotFound) (and the other sentinels) work.
func (e *Error) Unwrap() error { return e.Status }
