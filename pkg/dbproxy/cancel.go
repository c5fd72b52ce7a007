package dbproxy

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// CancelKeys maps the cancel keys a PostgreSQL front door hands its clients
// to the live sessions they cancel.
//
// A client never sees the database's own process id and secret key: the
// BackendKeyData it receives carries a key made here, mapped to the real one
// and to the session's backend. A CancelRequest with that key, arriving on a
// new connection, is sent through the same agent to the same target with the
// real key, and only while the session lives; its key is forgotten when the
// session ends. Keep one CancelKeys per server, shared by all its PostgreSQL
// listeners (a client may send its cancel to any of the server's addresses).
// The zero value is ready to use.
type CancelKeys struct {
	mu sync.Mutex
	m  map[uint32]*cancelEntry // by the process id given to the client
}

type cancelEntry struct {
	key     []byte        // the secret key given to the client
	real    cancelRequest // the database's own
	backend Backend       // the session's backend, to reach the same target
	route   Route         // the session's route, whose allowlist a cancel must pass
	busy    atomic.Bool   // a cancel is on its way: one at a time per session
}

// add maps a new key to real and b, and returns the key for the client: a
// random process id not in use (positive as an Int32, since clients read it
// as a signed number) and a random secret as long as the real one.
func (c *CancelKeys) add(real cancelRequest, b Backend, r Route) cancelRequest {
	key := make([]byte, len(real.key))
	rand.Read(key)
	var pidBytes [4]byte
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[uint32]*cancelEntry{}
	}
	for {
		rand.Read(pidBytes[:])
		pid := binary.BigEndian.Uint32(pidBytes[:]) & 0x7fffffff
		if _, used := c.m[pid]; pid == 0 || used {
			continue
		}
		c.m[pid] = &cancelEntry{key: key, real: real, backend: b, route: r}
		return cancelRequest{pid: pid, key: key}
	}
}

// remove forgets the key given out as pid.
func (c *CancelKeys) remove(pid uint32) {
	c.mu.Lock()
	delete(c.m, pid)
	c.mu.Unlock()
}

// lookup returns the entry of a client's cancel request, if its key matches.
func (c *CancelKeys) lookup(req cancelRequest) (*cancelEntry, bool) {
	c.mu.Lock()
	e, ok := c.m[req.pid]
	c.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare(e.key, req.key) != 1 {
		return nil, false
	}
	return e, true
}

// Len is the number of live sessions that can be canceled.
func (c *CancelKeys) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
