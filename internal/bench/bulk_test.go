package bench

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/testutil/tcptest"

	"github.com/tunnelrelay/tunnel/internal/testutil/leakcheck"
)

// TestTransferEveryPath moves a little each way over each path of an Env,
// and checks that Close leaves no goroutine behind.
func TestTransferEveryPath(t *testing.T) {
	leakcheck.Check(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	target, err := startBulkTarget()
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	env, err := newEnv(ctx, Config{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	ep, err := env.Expose(ctx, "bench-test", target.Addr())
	if err != nil {
		t.Fatal(err)
	}
	const size = 3<<20 + 7 // not a multiple of any buffer
	for _, p := range Paths {
		for _, op := range []byte{opUpload, opDownload} {
			t.Run(p.String()+"/"+dirName(op), func(t *testing.T) {
				d, err := transfer(ctx, ep.Addr(p), op, size)
				if err != nil {
					t.Fatal(err)
				}
				if d <= 0 || mbps(size, d) <= 0 {
					t.Errorf("elapsed %v", d)
				}
			})
		}
	}
}

// TestTransferShort checks that a transfer that ends early is an error, not
// a fast result.
func TestTransferShort(t *testing.T) {
	leakcheck.Check(t)
	target := tcptest.Serve(t, func(c *net.TCPConn) {
		var hdr [9]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		c.Write([]byte{msgReady})
		if hdr[0] == opDownload {
			io.ReadFull(c, hdr[:1]) // msgGo
			c.Write(make([]byte, 100))
			return
		}
		io.Copy(io.Discard, c) // and claim to have seen only 100
		var cnt [8]byte
		binary.BigEndian.PutUint64(cnt[:], 100)
		c.Write(cnt[:])
	})
	for _, op := range []byte{opUpload, opDownload} {
		t.Run(dirName(op), func(t *testing.T) {
			_, err := transfer(t.Context(), target, op, 1<<20)
			if err == nil || !strings.Contains(err.Error(), "100 bytes") {
				t.Fatalf("transfer of 1 MiB that moved 100 bytes: %v, want an error counting 100 bytes", err)
			}
		})
	}
}
