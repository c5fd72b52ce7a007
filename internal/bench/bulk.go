package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// The bulk scenario moves a fixed number of bytes (Config.BulkSize) one way
// over one connection and divides by the time from the first byte sent to
// the last byte received.
//
// A fixed amount rather than a fixed time: the clock then covers exactly the
// bytes that arrived, however much the path buffers. A timed run has to
// count bytes written by the deadline, and the tunnel holds more in flight
// than the relay (a stream window on top of the socket buffers), which
// would flatter it by up to that much; at 1 GiB per transfer those buffers
// are well under 1% of the whole either way, and setting the connection up
// is kept off the clock.
//
// The wire protocol between the bulk client and bulkTarget:
//
//	client → target: op (1 byte, 'U' upload or 'D' download), size (8 bytes, big endian)
//	target → client: 'R' once ready (the whole path is connected)
//	upload:   client → target: size bytes, then the client's half-close;
//	          target → client: the count it received (8 bytes, big endian)
//	download: client → target: 'G'
//	          target → client: size bytes, then the target's half-close
const (
	opUpload   = 'U'
	opDownload = 'D'
	msgReady   = 'R'
	msgGo      = 'G'
)

// bulkBufSize is the size of the benchmark's own reads and writes at both
// ends; what the relay and the tunnel copy with is theirs to choose.
const bulkBufSize = 128 << 10

// warmupSize is moved once per path and direction before measuring, so that
// connection setup, socket buffer growth and pools are not on the clock.
const warmupSize = 16 << 20

// bulkPayload is what sources send: random bytes, so that nothing on the way
// could compress them. It is only read once filled.
var bulkPayload = sync.OnceValue(func() []byte {
	b := make([]byte, bulkBufSize)
	r := rand.NewChaCha8([32]byte{'t', 'u', 'n', 'n', 'e', 'l'})
	r.Read(b)
	return b
})

// transferTimeout bounds one transfer of size bytes: generous for a slow,
// loaded machine (10 MB/s), so that a stall ends the benchmark instead of
// hanging it.
func transferTimeout(size int64) time.Duration {
	return 30*time.Second + time.Duration(size/10e6)*time.Second
}

// bulkTarget is an in-process TCP source and sink for bulk transfers.
type bulkTarget struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu; closed by Close
}

func startBulkTarget() (*bulkTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &bulkTarget{ln: ln, conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

func (t *bulkTarget) Addr() string { return t.ln.Addr().String() }

// Close stops the target, ends its connections and waits for them.
func (t *bulkTarget) Close() error {
	err := t.ln.Close()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}

func (t *bulkTarget) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		t.mu.Lock()
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer func() {
				t.mu.Lock()
				delete(t.conns, c)
				t.mu.Unlock()
				c.Close()
			}()
			serveBulk(c)
		}()
	}
}

// serveBulk serves one transfer; errors just end it (the client reports).
func serveBulk(c net.Conn) {
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	size := int64(binary.BigEndian.Uint64(hdr[1:]))
	if _, err := c.Write([]byte{msgReady}); err != nil {
		return
	}
	switch hdr[0] {
	case opUpload:
		n, _ := drain(c)
		var cnt [8]byte
		binary.BigEndian.PutUint64(cnt[:], uint64(n))
		c.Write(cnt[:])
	case opDownload:
		var g [1]byte
		if _, err := io.ReadFull(c, g[:]); err != nil || g[0] != msgGo {
			return
		}
		if err := send(c, size); err != nil {
			return
		}
		c.(*net.TCPConn).CloseWrite()
		drain(c) // until the client closes, so that it never sees a reset
	}
}

// send writes size bytes of the payload to w.
func send(w io.Writer, size int64) error {
	p := bulkPayload()
	for size > 0 {
		chunk := p[:min(int64(len(p)), size)]
		n, err := w.Write(chunk)
		size -= int64(n)
		if err != nil {
			return err
		}
	}
	return nil
}

// drain reads r to its end and counts the bytes, with a buffer of its own
// (io.Copy to io.Discard would do, but not with a buffer we chose).
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, bulkBufSize)
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// transfer moves size bytes over a new connection to addr in direction op
// and returns the time from the first byte sent to the last received.
func transfer(ctx context.Context, addr string, op byte, size int64) (time.Duration, error) {
	x, err := openTransfer(ctx, addr, op, size)
	if err != nil {
		return 0, err
	}
	defer x.close()
	return x.run()
}

// pending is a transfer whose path is connected and ready; run moves the
// bytes.
type pending struct {
	c    net.Conn
	op   byte
	size int64
	stop func() bool // ends the close on the context's end
}

// openTransfer connects to addr and asks the target for a transfer; it
// returns once the target is ready.
func openTransfer(ctx context.Context, addr string, op byte, size int64) (*pending, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	x := &pending{c: c, op: op, size: size, stop: context.AfterFunc(ctx, func() { c.Close() })}
	fail := func(err error) (*pending, error) {
		x.close()
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(transferTimeout(size))); err != nil {
		return fail(err)
	}
	var hdr [9]byte
	hdr[0] = op
	binary.BigEndian.PutUint64(hdr[1:], uint64(size))
	if _, err := c.Write(hdr[:]); err != nil {
		return fail(err)
	}
	var ready [1]byte
	if _, err := io.ReadFull(c, ready[:]); err != nil {
		return fail(fmt.Errorf("wait for the target: %w", err))
	}
	if ready[0] != msgReady {
		return fail(fmt.Errorf("target answered %q, want %q", ready[0], msgReady))
	}
	return x, nil
}

func (x *pending) close() {
	x.stop()
	x.c.Close()
}

// run moves the bytes, checks that all of them arrived and returns the
// time from the first byte sent to the last received.
func (x *pending) run() (time.Duration, error) {
	c, size := x.c, x.size
	start := time.Now()
	switch x.op {
	case opUpload:
		if err := send(c, size); err != nil {
			return 0, fmt.Errorf("upload: %w", err)
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return 0, err
		}
		var cnt [8]byte
		if _, err := io.ReadFull(c, cnt[:]); err != nil {
			return 0, fmt.Errorf("upload: read the target's count: %w", err)
		}
		elapsed := time.Since(start)
		if got := int64(binary.BigEndian.Uint64(cnt[:])); got != size {
			return 0, fmt.Errorf("upload: target received %d bytes, want %d", got, size)
		}
		return elapsed, nil
	case opDownload:
		if _, err := c.Write([]byte{msgGo}); err != nil {
			return 0, err
		}
		got, err := drain(c)
		elapsed := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("download after %d bytes: %w", got, err)
		}
		if got != size {
			return 0, fmt.Errorf("download: received %d bytes, want %d", got, size)
		}
		return elapsed, nil
	}
	return 0, fmt.Errorf("unknown op %q", x.op)
}

// mbps converts size bytes in d to MB/s (10^6 bytes per second).
func mbps(size int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(size) / d.Seconds() / 1e6
}

// bulkDirections are the directions every bulk figure is measured in.
var bulkDirections = []byte{opUpload, opDownload}

// Budgets of DESIGN.md: one bulk stream through the TLS transport, each
// direction, at least 0.95 × the reference relay; through the QUIC
// transport at least 0.7 × through the TLS transport.
const (
	bulkBudget = 0.95
	quicBudget = 0.7
)

// runBulk measures one bulk stream each way over every path, the tunnel
// with an agent connected over TLS and with one connected over QUIC. Every run takes the paths in turn, so that a burst of load
// elsewhere hits all of them rather than one.
func runBulk(ctx context.Context, env *Env) []Row {
	cfg := env.Config
	tls := make([]Row, len(bulkDirections))
	quic := make([]Row, len(bulkDirections))
	for i, op := range bulkDirections {
		tls[i] = Row{Figure: "one bulk stream over TLS, " + dirName(op), Unit: "MB/s"}
		quic[i] = Row{Figure: "one bulk stream over QUIC, " + dirName(op), Unit: "MB/s"}
	}
	rows := func() []Row { return append(append([]Row{}, tls...), quic...) }
	fail := func(err error) []Row {
		for i := range bulkDirections {
			tls[i].Err = err.Error()
			if quic[i].Err == "" {
				quic[i].Err = err.Error()
			}
		}
		return rows()
	}

	target, err := startBulkTarget()
	if err != nil {
		return fail(fmt.Errorf("start the bulk target: %w", err))
	}
	defer target.Close()
	ep, err := env.Expose(ctx, "bench-bulk", target.Addr())
	if err != nil {
		return fail(err)
	}
	paths := slices.Clone(Paths)
	if addr, err := env.ExposeQUIC(ctx, "bench-bulk-quic", target.Addr()); err != nil {
		// The TLS rows can still be measured.
		for i := range quic {
			quic[i].Err = fmt.Sprintf("connect an agent over QUIC: %v", err)
		}
		env.progress("bulk: no QUIC path: %v", err)
	} else {
		ep[PathQUIC] = addr
		paths = append(paths, PathQUIC)
	}

	for _, op := range bulkDirections {
		for _, p := range paths {
			if _, err := transfer(ctx, ep.Addr(p), op, min(warmupSize, cfg.BulkSize)); err != nil {
				return fail(fmt.Errorf("%s warm-up, %s: %w", dirName(op), p, err))
			}
		}
	}

	results := make([][numPaths][]float64, len(bulkDirections)) // [direction][path][run]
	for run := 1; run <= cfg.Runs; run++ {
		for i, op := range bulkDirections {
			for _, p := range paths {
				el, err := transfer(ctx, ep.Addr(p), op, cfg.BulkSize)
				if err != nil {
					return fail(fmt.Errorf("%s, %s, run %d: %w", dirName(op), p, run, err))
				}
				v := mbps(cfg.BulkSize, el)
				results[i][p] = append(results[i][p], v)
				env.progress("bulk %s run %d/%d: %-15s %8.1f MB/s", dirName(op), run, cfg.Runs, p, v)
			}
		}
	}
	for i := range bulkDirections {
		res := &results[i]
		tls[i].Direct = measurement(res[PathDirect])
		tls[i].Relay = measurement(res[PathRelay])
		tls[i].Tunnel = measurement(res[PathTunnel])
		tls[i] = tls[i].relative(atLeastOp, bulkBudget, againstRelay, tls[i].Relay.Median)
		if quic[i].Err == "" {
			quic[i].Direct = tls[i].Direct
			quic[i].Relay = tls[i].Relay
			quic[i].Tunnel = measurement(res[PathQUIC])
			quic[i] = quic[i].relative(atLeastOp, quicBudget, againstTLS, tls[i].Tunnel.Median)
		}
	}
	return rows()
}

func dirName(op byte) string {
	if op == opUpload {
		return "upload"
	}
	return "download"
}
