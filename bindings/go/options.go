package tetherdb

// Option says where a call goes and how a write is applied.
type Option func(*options)

type options struct {
	backend, bucket, prefix string
	queue                   bool
}

// Backend sends the call to the named backend ("local", "etcd",
// "dynamodb"); without it the call goes to the handle's default backend.
func Backend(name string) Option { return func(o *options) { o.backend = name } }

// Bucket puts the key in a bucket: the stored key is "bucket:key". A bucket
// must not contain ':'.
func Bucket(name string) Option { return func(o *options) { o.bucket = name } }

// Queued hands a write to the queue: Write returns once the write is
// queued, and Flush, Stop or Close report whether it was applied. For Write,
// WriteJSON and Tether only.
func Queued() Option { return func(o *options) { o.queue = true } }

// Prefix limits List and Pages to keys (without the bucket part) starting
// with p. For List and Pages only.
func Prefix(p string) Option { return func(o *options) { o.prefix = p } }

// collect applies opts, rejecting the ones that mean nothing to the call op.
func collect(op string, opts []Option, queueOK, prefixOK bool) (options, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.queue && !queueOK {
		return o, &Error{StatusInvalidArgument, op + ": Queued() applies to writes only"}
	}
	if o.prefix != "" && !prefixOK {
		return o, &Error{StatusInvalidArgument, op + ": Prefix() applies to List and Pages only"}
	}
	return o, nil
}
