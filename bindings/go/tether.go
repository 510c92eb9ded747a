package tetherdb

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
)

// Tether wraps fn, the tether decorator of the Python TetherDB: each call of
// the returned function calls fn and, when fn succeeds, writes the value it
// returned under its key with opts (Queued() to queue it), then returns
// fn's results with the key used. An empty key gets a new UUID v4. A
// []byte or string value is stored as it is; any other value as JSON.
func Tether(db *DB, fn func() (key string, value any, err error), opts ...Option) func() (string, any, error) {
	return func() (string, any, error) {
		key, value, err := fn()
		if err != nil {
			return key, value, err
		}
		if key == "" {
			key = uuid4()
		}
		var data []byte
		switch v := value.(type) {
		case []byte:
			data = v
		case string:
			data = []byte(v)
		default:
			if data, err = json.Marshal(v); err != nil {
				return key, value, err
			}
		}
		return key, value, db.Write(key, data, opts...)
	}
}

// uuid4 is a random (version 4) UUID in its canonical text form.
func uuid4() string {
	var b [16]byte
	rand.Read(b[:])         // never fails: crypto/rand crashes the program instead
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
