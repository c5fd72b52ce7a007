// Package leakcheck fails a test whose goroutines outlive it.
//
// It compares runtime.NumGoroutine with a baseline, so it is only meaningful
// in tests that do not run in parallel with others (no t.Parallel in the
// test or its siblings). It is not a goroutine profiler: on failure it dumps
// all stacks and leaves the reading to you.
package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

// DefaultWait is how long Check lets goroutines wind down.
const DefaultWait = 5 * time.Second

// Check records the current number of goroutines and, when the test ends
// (after every cleanup registered later, which runs first), waits up to
// DefaultWait for the number to fall back to it. If it does not, the test
// fails with a dump of all goroutine stacks. Call it first in the test.
func Check(t testing.TB) {
	t.Helper()
	CheckWithin(t, DefaultWait)
}

// CheckWithin is Check with an explicit bound on the wait.
func CheckWithin(t testing.TB, wait time.Duration) {
	t.Helper()
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		if n, ok := WaitFor(base, wait); !ok {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("leakcheck: %d goroutines %v after the test, %d before:\n%s", n, wait, base, buf)
		}
	})
}

// WaitFor polls until at most n goroutines run or wait passes, and returns
// the last count and whether it reached n.
func WaitFor(n int, wait time.Duration) (int, bool) {
	deadline := time.Now().Add(wait)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		got := runtime.NumGoroutine()
		if got <= n {
			return got, true
		}
		if time.Now().After(deadline) {
			return got, false
		}
		time.Sleep(delay)
	}
}
