// Command benchhelper runs one side part of a tunnel-bench measurement in a
// process of its own, so that its CPU time and descriptors are counted
// apart from the benchmark's:
//
//	benchhelper echo           a TCP echo target (the sessions scenario's)
//	benchhelper relay TARGET   the reference relay to TARGET, both halves
//
// It prints "listening ADDR" on stdout once it serves on ADDR (a loopback
// port), and runs until its stdin closes or it gets SIGINT or SIGTERM.
// tunnel-bench builds and starts it; it is not meant to be run by hand.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tunnelrelay/tunnel/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		io.Copy(io.Discard, os.Stdin) // returns when the parent closes it or dies
		cancel()
	}()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchhelper:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	switch {
	case len(args) == 1 && args[0] == "echo":
		return echo(ctx)
	case len(args) == 2 && args[0] == "relay":
		r, err := bench.StartRelay(ctx, args[1])
		if err != nil {
			return err
		}
		fmt.Printf("listening %s\n", r.Addr())
		<-ctx.Done()
		return r.Close()
	}
	return fmt.Errorf("usage: benchhelper echo | benchhelper relay TARGET")
}

// echo serves TCP echo on a loopback port until ctx is done. Each
// connection costs one goroutine and a small buffer: the sessions scenario
// holds thousands open.
func echo(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say
			continue
		}
		mu.Lock()
		conns[c] = struct{}{}
		if ctx.Err() != nil {
			c.Close() // accepted as the listener closed: missed by stop
		}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			buf := make([]byte, 512)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	return nil
}
