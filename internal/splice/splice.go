// Package splice copies bytes both ways between two connections until both
// directions have ended: the relay at the heart of every tunnel session.
//
// It honours half-close: when one side ends its writes, the other side's
// write direction is closed too (CloseWrite) and the opposite direction keeps
// flowing, for at most HalfCloseTimeout. A failure is passed on as a failure:
// when either side errs, both are reset (a stream's Reset, a TCP connection
// closed with SO_LINGER 0), so the far ends see a reset, never a clean end of
// a truncated exchange. Buffers come from a pool and are
// used directly: io.Copy would hand the copy to *net.TCPConn's ReadFrom or
// WriteTo, which ignore a supplied buffer and allocate their own.
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

// BufferSize is the size of the pooled copy buffers. Two TLS records hold
// 32 KiB of plaintext; the 12 bytes spared are the mux frame header that
// travels in the first of them, so a full read becomes one frame in exactly
// two records.
const BufferSize = 32<<10 - 12

var bufPool = sync.Pool{New: func() any { b := make([]byte, BufferSize); return &b }}

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
// always waits for its goroutines.
func Splice(ctx context.Context, a, b net.Conn, opt Options) Result {
	timeout := opt.HalfCloseTimeout
	if timeout <= 0 {
		timeout = DefaultHalfCloseTimeout
	}
	counters := opt.Counters
	if counters == nil {
		counters = new(Counters)
	}

	type half struct {
		n   int64
		err error
		ab  bool
	}
	results := make(chan half, 2)
	go func() {
		n, err := copyHalf(b, a, &counters.AToB)
		results <- half{n, err, true}
	}()
	go func() {
		n, err := copyHalf(a, b, &counters.BToA)
		results <- half{n, err, false}
	}()

	var (
		res     Result
		closed  bool // after closeBoth, errors are our own doing
		linger  <-chan time.Time
		ctxDone = ctx.Done()
	)
	closeBoth := func(cause error) {
		if closed {
			return
		}
		closed = true
		if res.Err == nil {
			res.Err = cause
		}
		if cause != nil {
			abort(a)
			abort(b)
			return
		}
		a.Close()
		b.Close()
	}
	for pending := 2; pending > 0; {
		select {
		case h := <-results:
			pending--
			if h.ab {
				res.AToB = h.n
			} else {
				res.BToA = h.n
			}
			switch {
			case h.err == errNoHalfClose:
				closeBoth(nil)
			case h.err != nil:
				closeBoth(h.err)
			case pending == 1:
				t := time.NewTimer(timeout)
				defer t.Stop()
				linger = t.C
			}
		case <-linger:
			closeBoth(ErrHalfCloseTimeout)
		case <-ctxDone:
			ctxDone = nil
			closeBoth(ctx.Err())
		}
	}
	closeBoth(nil)
	return res
}

// copyHalf copies src to dst until src ends, then closes dst's write side.
// A clean end returns a nil error.
func copyHalf(dst, src net.Conn, count *atomic.Int64) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
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
