package mux

import (
	"net"
	"sync"
)

// corkConn sits between a TLS connection and its TCP connection. While
// corked, it collects what TLS writes, and uncork sends it in one write: a
// mux frame that spans several TLS records (up to 16 KiB of plaintext each)
// leaves in one syscall instead of one per record.
//
// The collecting buffer comes from a pool and goes back after each flush,
// so an idle connection holds none.
type corkConn struct {
	net.Conn

	mu     sync.Mutex // TLS writes (handshake, alerts) may come from any goroutine
	corked bool
	buf    *[]byte
}

// corkBufSize fits a large frame: 256 KiB of plaintext in 16 records, each
// with its header and tag.
const corkBufSize = 256<<10 + 16*64

var corkPool = sync.Pool{New: func() any { b := make([]byte, 0, corkBufSize); return &b }}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = corkPool.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	return len(p), nil
}

// cork starts collecting writes.
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork stops collecting and sends what was collected, in one write.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.buf == nil {
		return nil
	}
	_, err := c.Conn.Write(*c.buf)
	if cap(*c.buf) <= 2*corkBufSize {
		*c.buf = (*c.buf)[:0]
		corkPool.Put(c.buf)
	}
	c.buf = nil
	return err
}
