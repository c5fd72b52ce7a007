// Package splice copies bytes both ways between two connections until both
// directions have ended: the relay at the heart of every tunnel session.
//
// It honours half-close: when one side ends its writes, the other side's
// write direction is closed too (CloseWrite) and the opposite direction keeps
// flowing, for at most HalfCloseTimeout. A failure is passed on as a failure:
// when either side errs, both are reset (a stream's Reset, a TCP connection
// closed with SO_LINGER 0), so the far ends see a reset, never a clean end of
// a truncated exchange.
//
// A session costs little while it is idle and moves bulk cheaply while it is
// busy. Each direction reads into a pooled buffer used directly (io.Copy
// would hand the copy to *net.TCPConn's ReadFrom or WriteTo, which ignore a
// supplied buffer and allocate their own). A direction starts with a small
// buffer and takes a large one once a read fills the small one, so bulk
// moves in large frames and few syscalls. A direction that has read nothing
// for IdleAfter gives its buffer back and waits for the next byte without
// one (see wait.go), so ten thousand idle sessions hold no buffers at all.
// One direction runs on the caller's goroutine and one on a goroutine of its
// own: two goroutines per session.
package splice

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultHalfCloseTimeout bounds how long one direction may go on after the
// other has ended.
const DefaultHalfCloseTimeout = 30 * time.Second

// DefaultIdleAfter is how long a direction may read nothing before it gives
// its buffer back.
const DefaultIdleAfter = time.Second

// Buffer sizes. A mux frame header is 12 bytes; the sizes leave room for it,
// so a full read becomes one frame that fills whole TLS records (16 KiB of
// plaintext each): one record for a small read, sixteen for a large one.
const (
	SmallBufferSize = 16<<10 - 12
	LargeBufferSize = 256<<10 - 12
)

var (
	smallPool = sync.Pool{New: func() any { b := make([]byte, SmallBufferSize); return &b }}
	largePool = sync.Pool{New: func() any { b := make([]byte, LargeBufferSize); return &b }}
)

// Counters are live byte counts of one session, readable while it runs.
type Counters struct {
	AToB atomic.Int64 // bytes read from a and written to b
	BToA atomic.Int64 // bytes read from b and written to a
}

// Options tune Splice. The zero value means defaults.
type Options struct {
	// HalfCloseTimeout bounds how long one direction may continue after the
	// other has ended. Zero means DefaultHalfCloseTimeout.
	HalfCloseTimeout time.Duration
	// IdleAfter is how long a direction may read nothing before it returns
	// its buffer to the pool. Zero means DefaultIdleAfter.
	IdleAfter time.Duration
	// Counters, if set, is updated as bytes move.
	Counters *Counters
}

// Result says how a session ended.
type Result struct {
	AToB, BToA int64
	// Err is the first error other than a clean end of stream, if any:
	// a reset, a failed write, the half-close timeout, or the context's.
	Err error
}

// ErrHalfCloseTimeout is reported when the second direction did not end in
// time after the first.
var ErrHalfCloseTimeout = errors.New("splice: half-closed for too long")

type closeWriter interface{ CloseWrite() error }

// Splice copies a to b and b to a until both directions end, ctx is done, or
// either direction fails; then it closes both connections and returns. It
// always waits for its goroutine. Nothing else may read from a or b, or set
// their read deadlines, while it runs.
func Splice(ctx context.Context, a, b net.Conn, opt Options) Result {
	if opt.HalfCloseTimeout <= 0 {
		opt.HalfCloseTimeout = DefaultHalfCloseTimeout
	}
	if opt.IdleAfter <= 0 {
		opt.IdleAfter = DefaultIdleAfter
	}
	if opt.Counters == nil {
		opt.Counters = new(Counters)
	}
	s := &session{a: a, b: b, halfClose: opt.HalfCloseTimeout}
	stopCtx := context.AfterFunc(ctx, func() { s.end(ctx.Err()) })

	other := make(chan halfResult, 1)
	go func() {
		n, err := copyHalf(b, a, &opt.Counters.AToB, opt.IdleAfter)
		s.halfDone(err)
		other <- halfResult{n, err}
	}()
	var res Result
	var err error
	res.BToA, err = copyHalf(a, b, &opt.Counters.BToA, opt.IdleAfter)
	s.halfDone(err)
	h := <-other
	res.AToB = h.n

	stopCtx()
	res.Err = s.finish()
	return res
}

type halfResult struct {
	n   int64
	err error
}

// session coordinates the two directions: the first failure aborts both,
// the first clean end starts the half-close timer, the second ends it all.
type session struct {
	a, b      net.Conn
	halfClose time.Duration

	mu      sync.Mutex
	ended   int         // directions that have returned
	closed  bool        // both connections have been closed or aborted
	cause   error       // the first failure
	lingers *time.Timer // the half-close timer, once one direction ended
}

// halfDone records the end of one direction.
func (s *session) halfDone(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended++
	switch {
	case err == errNoHalfClose:
		s.closeLocked(nil)
	case err != nil:
		s.closeLocked(err)
	case s.ended == 1:
		s.lingers = time.AfterFunc(s.halfClose, func() { s.end(ErrHalfCloseTimeout) })
	}
}

// end aborts both directions with cause, unless they are already closed.
func (s *session) end(cause error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(cause)
}

// closeLocked closes both connections, or aborts them for a non-nil cause,
// once. After it, errors from the copies are its own doing.
func (s *session) closeLocked(cause error) {
	if s.closed {
		return
	}
	s.closed = true
	s.cause = cause
	if cause != nil {
		abort(s.a)
		abort(s.b)
		return
	}
	s.a.Close()
	s.b.Close()
}

// finish closes whatever is still open after both directions have ended
// and returns the first failure.
func (s *session) finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lingers != nil {
		s.lingers.Stop()
	}
	s.closeLocked(nil)
	return s.cause
}

// copyHalf copies src to dst until src ends, then closes dst's write side.
// A clean end returns a nil error.
func copyHalf(dst, src net.Conn, count *atomic.Int64, idleAfter time.Duration) (int64, error) {
	var (
		r     = reader{src: src, idleAfter: idleAfter}
		total int64
	)
	defer r.release()
	for {
		p, rerr := r.read()
		if len(p) > 0 {
			w, werr := dst.Write(p)
			total += int64(w)
			count.Add(int64(w))
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			if cw, ok := dst.(closeWriter); ok {
				if err := cw.CloseWrite(); err != nil && !peerGone(err) {
					return total, err
				}
				return total, nil
			}
			// dst cannot half-close: ending the whole session is the
			// only way to pass the end on.
			return total, errNoHalfClose
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

type resetter interface{ Reset() error }

// abort ends c so that its peer sees a failure.
func abort(c net.Conn) {
	switch c := c.(type) {
	case resetter:
		c.Reset()
	case *net.TCPConn:
		c.SetLinger(0)
		c.Close()
	default:
		c.Close()
	}
}

// peerGone reports an error that only says the other end has already gone,
// which is no failure when passing on an end of stream.
func peerGone(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ENOTCONN) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// errNoHalfClose ends a session cleanly when one side cannot half-close.
var errNoHalfClose = errors.New("splice: peer cannot half-close")
