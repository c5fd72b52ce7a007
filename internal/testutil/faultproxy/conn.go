package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

const (
	chunkSize   = 32 << 10
	dialTimeout = 10 * time.Second
)

var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, chunkSize)
	return &b
}}

// conn is one proxied connection: the accepted client side and, once
// dialed, the target side. Each direction has a reader goroutine filling a
// queue and a writer draining it, so a delayed chunk never stops the next
// read.
type conn struct {
	// Static after newConn.
	p      *Proxy
	client net.Conn
	ctx    context.Context // canceled by close; ends the dial and every wait
	cancel context.CancelFunc

	mu       sync.Mutex // guards upstream and closed
	upstream net.Conn
	closed   bool
}

func newConn(p *Proxy, client net.Conn) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{p: p, client: client, ctx: ctx, cancel: cancel}
}

// handle dials the target and splices until both directions have ended
// (normal close) or either fails (reset). It owns the connection.
func (c *conn) handle() {
	defer c.p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	up, err := d.DialContext(c.ctx, "tcp", c.p.target)
	if err != nil {
		// The target refused or timed out: reset the client, the nearest
		// thing to passing the refusal on.
		c.close(true)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		up.Close()
		return
	}
	c.upstream = up
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.pipe(c.client, up)
	}()
	c.pipe(up, c.client)
	wg.Wait()
	c.close(false)
}

// close closes both sides, with a reset when abort is set, and forgets the
// connection. Only the first call does anything.
func (c *conn) close(abort bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	up := c.upstream
	c.mu.Unlock()

	c.cancel()
	for _, nc := range []net.Conn{c.client, up} {
		if nc == nil {
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok && abort {
			tc.SetLinger(0)
		}
		nc.Close()
	}
	c.p.untrack(c)
}

// pipe forwards src to dst until src ends, then half-closes dst. It returns
// when both its goroutines are done.
func (c *conn) pipe(dst, src net.Conn) {
	q := newQueue()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		c.read(src, q)
	}()
	c.write(dst, q)
	<-readDone
}

// read queues what src sends, stamped with its due time, and then the end of
// stream. A read error other than EOF resets the whole connection.
func (c *conn) read(src net.Conn, q *queue) {
	done := c.ctx.Done()
	for c.p.waitRunning(done) {
		bp := chunkPool.Get().(*[]byte)
		n, err := src.Read(*bp)
		if n > 0 {
			if !q.push(chunk{buf: bp, n: n, due: c.p.due()}, done) {
				return
			}
		} else {
			chunkPool.Put(bp)
		}
		if errors.Is(err, io.EOF) {
			q.push(chunk{due: c.p.due()}, done)
			return
		}
		if err != nil {
			c.close(true)
			return
		}
	}
}

// write drains q into dst, each chunk no earlier than its due time and not
// while stalled. At the end of stream it half-closes dst (FIN) so the peer
// sees EOF while the other direction keeps flowing.
func (c *conn) write(dst net.Conn, q *queue) {
	done := c.ctx.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		ch, ok := q.pop(done)
		if !ok {
			return
		}
		if wait := time.Until(ch.due); !ch.due.IsZero() && wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-done:
				return
			}
		}
		if !c.p.waitRunning(done) {
			return
		}
		if ch.buf == nil {
			if cw, ok := dst.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			return
		}
		_, err := dst.Write((*ch.buf)[:ch.n])
		chunkPool.Put(ch.buf)
		if err != nil {
			c.close(true)
			return
		}
	}
}
