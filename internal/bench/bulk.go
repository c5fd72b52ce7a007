package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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
// than the relay (a 4 MiB stream window on top of the socket buffers), which
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
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if err := c.SetDeadline(time.Now().Add(transferTimeout(size))); err != nil {
		return 0, err
	}

	var hdr [9]byte
	hdr[0] = op
	binary.BigEndian.PutUint64(hdr[1:], uint64(size))
	if _, err := c.Write(hdr[:]); err != nil {
		return 0, err
	}
	var ready [1]byte
	if _, err := io.ReadFull(c, ready[:]); err != nil {
		return 0, fmt.Errorf("wait for the target: %w", err)
	}
	if ready[0] != msgReady {
		return 0, fmt.Errorf("target answered %q, want %q", ready[0], msgReady)
	}

	start := time.Now()
	switch op {
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
	return 0, fmt.Errorf("unknown op %q", op)
}

// mbps converts size bytes in d to MB/s (10^6 bytes per second).
func mbps(size int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(size) / d.Seconds() / 1e6
}

// bulkDirections are the rows of the bulk scenario.
var bulkDirections = []struct {
	op     byte
	figure string
}{
	{opUpload, "one bulk stream, upload"},
	{opDownload, "one bulk stream, download"},
}

// bulkBudget is DESIGN.md's: one bulk stream through the TLS transport, each
// direction, at least 0.95 × the reference relay.
const bulkBudget = 0.95

// runBulk measures one bulk stream each way over every path. Every run
// takes the paths in turn, so that a burst of load elsewhere hits all of
// them rather than one.
func runBulk(ctx context.Context, env *Env) []Row {
	cfg := env.Config
	rows := make([]Row, len(bulkDirections))
	for i, d := range bulkDirections {
		rows[i] = Row{Figure: d.figure, Unit: "MB/s"}
	}
	fail := func(err error) []Row {
		for i := range rows {
			rows[i].Err = err.Error()
		}
		return rows
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

	for _, d := range bulkDirections {
		for _, p := range Paths {
			if _, err := transfer(ctx, ep.Addr(p), d.op, min(warmupSize, cfg.BulkSize)); err != nil {
				return fail(fmt.Errorf("%s warm-up, %s: %w", d.figure, p, err))
			}
		}
	}

	results := make([][3][]float64, len(bulkDirections)) // [direction][path][run]
	for run := 1; run <= cfg.Runs; run++ {
		for i, d := range bulkDirections {
			for _, p := range Paths {
				el, err := transfer(ctx, ep.Addr(p), d.op, cfg.BulkSize)
				if err != nil {
					return fail(fmt.Errorf("%s, %s, run %d: %w", d.figure, p, run, err))
				}
				v := mbps(cfg.BulkSize, el)
				results[i][p] = append(results[i][p], v)
				env.progress("bulk %s run %d/%d: %-15s %8.1f MB/s", dirName(d.op), run, cfg.Runs, p, v)
			}
		}
	}
	for i := range rows {
		rows[i].Direct = measurement(results[i][PathDirect])
		rows[i].Relay = measurement(results[i][PathRelay])
		rows[i].Tunnel = measurement(results[i][PathTunnel])
		rows[i] = rows[i].withBudget(bulkBudget, PathRelay)
	}
	return rows
}

func dirName(op byte) string {
	if op == opUpload {
		return "upload"
	}
	return "download"
}
