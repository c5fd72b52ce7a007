package splice

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// reader reads one direction of a session into a pooled buffer that it holds
// only while the direction is busy.
//
// Every read runs under a read deadline IdleAfter ahead (refreshed at most
// four times per IdleAfter, so busy reads rarely pay for it). When it
// expires with nothing read, the buffer goes back to the pool and the reader
// waits for the next byte without one (wait), then takes a small buffer
// again. A read that fills the small buffer moves the direction to a large
// one.
type reader struct {
	src       net.Conn
	idleAfter time.Duration

	bp      *[]byte // the buffer held; nil while idle
	large   bool    // bp is from largePool
	grow    bool    // the last read filled a small buffer
	armedAt time.Time
	one     [1]byte // the byte wait consumed, where it must consume one
}

// bufferedWait bounds the read that collects what is already buffered
// behind the byte wait consumed. A deadline already past would do for
// yamux, which looks at its buffer first, but quic-go looks at the deadline
// first and would return nothing.
const bufferedWait = 100 * time.Microsecond

// read returns the next bytes from src, valid until the next call.
func (r *reader) read() ([]byte, error) {
	for {
		if r.bp == nil {
			return r.wake()
		}
		if r.grow {
			r.release()
			r.take(true)
		}
		r.arm()
		buf := *r.bp
		n, err := r.src.Read(buf)
		if isTimeout(err) {
			if n > 0 {
				return buf[:n], nil
			}
			r.release()
			continue
		}
		r.grow = !r.large && n == len(buf)
		return buf[:n], err
	}
}

// wake waits for src to become readable without holding a buffer, takes a
// small one, and returns what is there to read.
func (r *reader) wake() ([]byte, error) {
	if err := r.src.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	r.armedAt = time.Time{}
	got, err := wait(r.src, r.one[:])
	if err != nil && got == 0 {
		return nil, err
	}
	r.take(false)
	buf := *r.bp
	if got == 0 {
		return r.read()
	}
	// wait consumed the first byte: add whatever else is already buffered
	// behind it, without blocking, so the first message after a pause
	// still leaves in one piece.
	buf[0] = r.one[0]
	if err != nil {
		return buf[:1], err
	}
	n := 0
	if r.src.SetReadDeadline(time.Now().Add(bufferedWait)) == nil {
		var rerr error
		n, rerr = r.src.Read(buf[1:])
		if rerr != nil && !isTimeout(rerr) {
			return buf[:1+n], rerr
		}
	}
	return buf[:1+n], nil
}

// arm moves the idle deadline IdleAfter ahead, unless it was moved less
// than a quarter of that ago.
func (r *reader) arm() {
	now := time.Now()
	if now.Sub(r.armedAt) < r.idleAfter/4 {
		return
	}
	r.armedAt = now
	r.src.SetReadDeadline(now.Add(r.idleAfter))
}

// held counts the buffers taken and not yet released, process-wide.
var held atomic.Int64

func (r *reader) take(large bool) {
	held.Add(1)
	r.large = large
	r.grow = false
	if large {
		r.bp = largePool.Get().(*[]byte)
	} else {
		r.bp = smallPool.Get().(*[]byte)
	}
}

// release returns the buffer, if one is held.
func (r *reader) release() {
	if r.bp == nil {
		return
	}
	held.Add(-1)
	if r.large {
		largePool.Put(r.bp)
	} else {
		smallPool.Put(r.bp)
	}
	r.bp = nil
}

func isTimeout(err error) bool {
	if err == nil {
		return false // before ne, which escapes: no allocation per read
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
