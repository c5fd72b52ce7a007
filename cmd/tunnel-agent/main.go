// Command tunnel-agent runs inside a private network, holds one outbound
// connection to tunnel-server and, for every session the server opens,
// dials one of the databases its own config declares.
package main

import "github.com/tunnelrelay/tunnel/internal/cli"

func main() { cli.Main("tunnel-agent", newRootCmd()) }
