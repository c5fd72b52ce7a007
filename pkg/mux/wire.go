package mux

import (
	"net"
	"sync"
	"time"
)

// corkConn sits between a TLS connection and its TCP connection, and does
// two things for throughput.
//
// While corked it collects what TLS writes, and uncork sends it as one
// unit: a mux frame that spans several TLS records (up to 16 KiB of
// plaintext each) leaves in one syscall instead of one per record.
//
// Once the handshake is done (startAsync), the syscalls of large frames
// move off the caller's goroutine: uncork queues the frame and returns,
// and a flusher goroutine writes whatever is queued, several frames in one
// writev when they pile up. yamux encrypts and sends every frame of the
// connection on one goroutine; this way the encryption of the next frame
// overlaps the kernel's work on the last one, on another core. A small
// frame with nothing queued ahead of it is written at once, on the
// caller's goroutine: its latency matters more. At most maxQueued bytes of
// buffers wait: beyond that writes block until the flusher catches up, so a peer
// that stops reading still stops the sender. The flusher runs only while
// there is something to write, and the buffers come from a pool and go
// back after each write: an idle connection holds neither.
type corkConn struct {
	net.Conn

	mu       sync.Mutex
	drained  sync.Cond // signalled when queued shrinks or the flusher stops
	corked   bool
	hint     int // bytes expected while corked
	async    bool
	cur      *[]byte   // what is being collected while corked
	queue    []*[]byte // collected and waiting for the flusher
	queued   int       // bytes of buffer (capacity) queued and being written
	flushing bool      // a flusher goroutine is running
	err      error     // the first write error; every later write fails with it
}

// Cork buffers come in two sizes: one record of 16 KiB of plaintext with
// its header and tag, for the many small frames (pings, window updates,
// small messages), and one large frame of 256 KiB in 16 records.
const (
	smallCorkBufSize = 16<<10 + 64
	corkBufSize      = 256<<10 + 16*64
)

// maxQueued bounds the buffers (by capacity) waiting for the flusher.
const maxQueued = 1 << 20

// closeFlushWait bounds how long Close waits for queued bytes to be written.
const closeFlushWait = time.Second

var (
	smallCorkPool = sync.Pool{New: func() any { b := make([]byte, 0, smallCorkBufSize); return &b }}
	corkPool      = sync.Pool{New: func() any { b := make([]byte, 0, corkBufSize); return &b }}
)

// getCorkBuf returns an empty buffer from the pool that fits n bytes, if
// either does.
func getCorkBuf(n int) *[]byte {
	if n <= smallCorkBufSize {
		return smallCorkPool.Get().(*[]byte)
	}
	return corkPool.Get().(*[]byte)
}

func putCorkBuf(b *[]byte) {
	switch cap(*b) {
	case smallCorkBufSize:
		*b = (*b)[:0]
		smallCorkPool.Put(b)
	case corkBufSize:
		*b = (*b)[:0]
		corkPool.Put(b)
	}
	// Any other size was grown by an unusually large write: let it go.
}

func newCorkConn(c net.Conn) *corkConn {
	w := &corkConn{Conn: c}
	w.drained.L = &w.mu
	return w
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	switch {
	case c.corked:
		if c.cur == nil {
			c.cur = getCorkBuf(c.hint)
		} else if len(*c.cur)+len(p) > cap(*c.cur) && cap(*c.cur) == smallCorkBufSize {
			// The frame is larger than its hint said: move to a large buffer.
			b := corkPool.Get().(*[]byte)
			*b = append(*b, *c.cur...)
			putCorkBuf(c.cur)
			c.cur = b
		}
		*c.cur = append(*c.cur, p...)
	case c.async:
		// A write of TLS's own (an alert, an answer to a key update)
		// between frames: queued like a frame, and held back like one,
		// so a peer that provokes such writes and reads nothing cannot
		// make the queue grow.
		b := getCorkBuf(len(p))
		*b = append(*b, p...)
		c.enqueueLocked(b)
		c.waitDrainedLocked()
	default:
		return c.Conn.Write(p)
	}
	return len(p), nil
}

// startAsync moves later writes to the flusher.
func (c *corkConn) startAsync() {
	c.mu.Lock()
	c.async = true
	c.mu.Unlock()
}

// cork starts collecting writes; size is about how many bytes of plaintext
// will come, to pick the buffer.
func (c *corkConn) cork(size int) {
	c.mu.Lock()
	c.corked = true
	c.hint = size + (size/tlsRecordPayload+1)*32 // and each record's header and tag
	c.mu.Unlock()
}

// uncork stops collecting and sends what was collected: queued for the
// flusher once async, else at once in one write.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	b := c.cur
	c.cur = nil
	if b == nil {
		return c.err
	}
	if !c.async {
		_, err := c.Conn.Write(*b)
		putCorkBuf(b)
		return err
	}
	if c.err != nil {
		putCorkBuf(b)
		return c.err
	}
	if !c.flushing && len(*b) <= smallCorkBufSize {
		// A small frame with nothing ahead of it (a heartbeat, a query):
		// write it here, sparing the hand-off to another goroutine, which
		// costs a small message more latency than it saves.
		c.queue = append(c.queue, b)
		c.queued += cap(*b)
		c.flushing = true
		c.mu.Unlock()
		c.flush()
		c.mu.Lock()
		return c.err
	}
	c.enqueueLocked(b)
	c.waitDrainedLocked()
	return c.err
}

// enqueueLocked queues b and makes sure a flusher runs. A small write that
// fits in the last queued buffer is copied there, so many small frames
// behind a large one take a buffer between them, not one each.
func (c *corkConn) enqueueLocked(b *[]byte) {
	if n := len(c.queue); n > 0 {
		tail := c.queue[n-1]
		if len(*tail)+len(*b) <= cap(*tail) {
			*tail = append(*tail, *b...)
			putCorkBuf(b)
			c.kickLocked()
			return
		}
	}
	c.queue = append(c.queue, b)
	c.queued += cap(*b)
	c.kickLocked()
}

// kickLocked starts a flusher unless one runs.
func (c *corkConn) kickLocked() {
	if !c.flushing {
		c.flushing = true
		go c.flush()
	}
}

// waitDrainedLocked waits while more than maxQueued bytes of buffers wait
// for the flusher.
func (c *corkConn) waitDrainedLocked() {
	for c.queued > maxQueued && c.err == nil {
		c.drained.Wait()
	}
}

// flush writes what is queued until nothing is, or a write fails. It runs
// with flushing set, on a goroutine of its own or, for a small frame, on
// the writer's.
func (c *corkConn) flush() {
	var bufs net.Buffers
	c.mu.Lock()
	for len(c.queue) > 0 && c.err == nil {
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()

		bufs = bufs[:0]
		n := 0
		for _, b := range batch {
			bufs = append(bufs, *b)
			n += cap(*b)
		}
		_, err := bufs.WriteTo(c.Conn)
		for _, b := range batch {
			putCorkBuf(b)
		}

		c.mu.Lock()
		c.queued -= n
		if err != nil && c.err == nil {
			c.err = err
		}
		c.drained.Broadcast()
	}
	for _, b := range c.queue { // after a failure
		c.queued -= cap(*b)
		putCorkBuf(b)
	}
	c.queue = nil
	c.flushing = false
	c.drained.Broadcast()
	c.mu.Unlock()
}

// Close closes the TCP connection once the queued bytes are written (the
// mux's goodbye may be among them), or after closeFlushWait when the peer
// does not take them.
func (c *corkConn) Close() error {
	t := time.AfterFunc(closeFlushWait, func() { c.Conn.Close() })
	defer t.Stop()
	c.mu.Lock()
	for c.flushing {
		c.drained.Wait()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
