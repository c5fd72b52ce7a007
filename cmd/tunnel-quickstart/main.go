// Command tunnel-quickstart builds tunnel-server and tunnel-agent and brings
// both up on loopback with fresh certificates and a route to a real target,
// then prints the command that connects through the tunnel. Ctrl-C stops it.
//
//	go run ./cmd/tunnel-quickstart
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/tunnelrelay/tunnel/internal/quickstart"
)

func main() {
	dir := flag.String("dir", ".quickstart", "directory for binaries, configs, certificates and the database (emptied first)")
	target := flag.String("target", "auto", `what the route reaches: "auto" (PostgreSQL on 127.0.0.1:5432 if it answers, else a built-in echo service), "echo", or host:port`)
	connect := flag.String("connect", "", "instead, connect stdin and stdout to host:port (a stand-in for nc)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *connect != "" {
		err = quickstart.Connect(ctx, *connect, os.Stdin, os.Stdout)
	} else {
		err = quickstart.Run(ctx, quickstart.Options{Dir: *dir, Target: *target, Stdout: os.Stdout})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tunnel-quickstart:", err)
		os.Exit(1)
	}
}
