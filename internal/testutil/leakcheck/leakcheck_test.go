package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	base := runtime.NumGoroutine()
	stop := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		<-stop
	}()
	if n, ok := WaitFor(base, 20*time.Millisecond); ok {
		t.Fatalf("WaitFor(%d) = %d, true with an extra goroutine running", base, n)
	}
	close(stop)
	<-exited
	if n, ok := WaitFor(base, time.Second); !ok {
		t.Fatalf("WaitFor(%d) = %d, false after the goroutine exited", base, n)
	}
}
