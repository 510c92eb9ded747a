package tetherdb

import "runtime"

// Every failed call yields before reading its message: without
// runtime.LockOSThread in call, goroutines would then resume on other
// threads and read other goroutines' messages, which
// TestErrorMessagesPerGoroutine catches.
func init() { testHookBeforeMessage = runtime.Gosched }
