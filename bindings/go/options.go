package tetherdb

import "time"

// Option says where a call goes and how a write is applied.
type Option func(*options)

type options struct {
	backend, bucket, prefix string
	queue                   bool
	ifAbsent, sliding       bool
	ifVersion               uint64
	ttl                     time.Duration
	keysOnly                bool
	given                   optionSet // the options of the call beyond Backend and Bucket
}

// optionSet is a set of the options that only some calls take.
type optionSet uint

const (
	optQueued optionSet = 1 << iota
	optPrefix
	optIfAbsent
	optIfVersion
	optTTL
	optSliding
	optKeysOnly
)

// What each option is called in errors, and which calls take it.
var optionNames = []struct {
	opt        optionSet
	name, from string
}{
	{optQueued, "Queued()", "writes only"},
	{optPrefix, "Prefix()", "List, Pages and Copy only"},
	{optIfAbsent, "IfAbsent()", "writes only"},
	{optIfVersion, "IfVersion()", "writes and Delete only"},
	{optTTL, "TTL()", "writes only"},
	{optSliding, "Sliding()", "writes only"},
	{optKeysOnly, "KeysOnly()", "List and Pages only"},
}

// The options each kind of call takes beyond Backend and Bucket.
const (
	writeOptions  = optQueued | optIfAbsent | optIfVersion | optTTL | optSliding
	deleteOptions = optIfVersion
	listOptions   = optPrefix | optKeysOnly
)

// Backend sends the call to the named backend ("local", "etcd",
// "dynamodb"); without it the call goes to the handle's default backend.
func Backend(name string) Option { return func(o *options) { o.backend = name } }

// Bucket puts the key in a bucket: the stored key is "bucket:key". A bucket
// must not contain ':'.
func Bucket(name string) Option { return func(o *options) { o.bucket = name } }

// Queued hands a write to the queue: Write returns once the write is
// queued, and Flush, Stop or Close report whether it was applied. For Write,
// WriteJSON, WriteVersioned and Tether only.
func Queued() Option {
	return func(o *options) { o.queue = true; o.given |= optQueued }
}

// Prefix limits List and Pages to keys (without the bucket part) starting
// with p. For List and Pages only.
func Prefix(p string) Option {
	return func(o *options) { o.prefix = p; o.given |= optPrefix }
}

// IfAbsent writes only where the key is absent (or expired): a write that
// finds it present fails with an error matching ErrConflict and changes
// nothing. For writes only; not with IfVersion or Queued.
func IfAbsent() Option {
	return func(o *options) { o.ifAbsent = true; o.given |= optIfAbsent }
}

// IfVersion writes or deletes only where the key's version is v (from
// WriteVersioned, ReadVersioned or KeyVersion): an error matching
// ErrConflict when it is another, and nothing changes; ErrNotFound when
// the key is absent. For writes and Delete; not with IfAbsent or Queued.
func IfVersion(v uint64) Option {
	return func(o *options) { o.ifVersion = v; o.given |= optIfVersion }
}

// TTL gives the written key an expiry: it is absent for every call from d
// after the write on (for a queued write too: after the call, not after
// the worker applies it). Rounded up to whole milliseconds; 0 writes the
// key without expiry, as a write without TTL does. ErrUnsupported on a
// backend without expiry. For writes only.
func TTL(d time.Duration) Option {
	return func(o *options) { o.ttl = d; o.given |= optTTL }
}

// Sliding, with TTL, restarts the key's ttl at each read of it (Read,
// ReadVersioned; not List). For writes only.
func Sliding() Option {
	return func(o *options) { o.sliding = true; o.given |= optSliding }
}

// KeysOnly lists keys without their values: Entry.Value is nil, and the
// backend fetches no values where it can avoid it. For List and Pages only.
func KeysOnly() Option {
	return func(o *options) { o.keysOnly = true; o.given |= optKeysOnly }
}

// collect applies opts, rejecting the ones that mean nothing to the call
// op: allowed is the set it takes.
func collect(op string, opts []Option, allowed optionSet) (options, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	for _, n := range optionNames {
		if o.given&n.opt != 0 && allowed&n.opt == 0 {
			return o, &Error{StatusInvalidArgument, op + ": " + n.name + " applies to " + n.from}
		}
	}
	if o.ttl < 0 {
		return o, &Error{StatusInvalidArgument, op + ": a negative TTL (" + o.ttl.String() + ")"}
	}
	return o, nil
}

// ttlMs is a TTL in the C API's whole milliseconds, rounded up, so that a
// TTL of less than a millisecond still expires rather than meaning none.
func ttlMs(d time.Duration) uint64 {
	ms := d / time.Millisecond
	if d%time.Millisecond != 0 {
		ms++
	}
	return uint64(ms)
}
