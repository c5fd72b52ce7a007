package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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

// TestParallelTransfer runs the parallel transfer directly against a bulk
// target and checks that a stream that ends early fails the whole.
func TestParallelTransfer(t *testing.T) {
	leakcheck.Check(t)
	target, err := startBulkTarget()
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	for _, op := range []byte{opUpload, opDownload} {
		t.Run(dirName(op), func(t *testing.T) {
			v, err := parallelTransfer(t.Context(), target.Addr(), op, 256<<10+3)
			if err != nil {
				t.Fatal(err)
			}
			if v <= 0 {
				t.Errorf("aggregate %v MB/s", v)
			}
		})
	}
	short := tcptest.Serve(t, func(c *net.TCPConn) {
		var hdr [9]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		c.Write([]byte{msgReady})
		io.ReadFull(c, hdr[:1]) // msgGo
		c.Write(make([]byte, 10))
	})
	if _, err := parallelTransfer(t.Context(), short, opDownload, 1<<20); err == nil || !strings.Contains(err.Error(), "received 10 bytes") {
		t.Errorf("parallel download from a target that sends 10 bytes: %v, want an error counting 10 bytes", err)
	}
}

func TestSkipOrFail(t *testing.T) {
	var r Row
	skipOrFail(&r, fmt.Errorf("no go command: %w", errSkip))
	if r.Skipped != "no go command" || r.Err != "" {
		t.Errorf("after a skip: %+v", r)
	}
	r = Row{}
	skipOrFail(&r, errors.New("go build: exit status 1"))
	if r.Skipped != "" || r.Err != "go build: exit status 1" {
		t.Errorf("after a failure: %+v", r)
	}
}
