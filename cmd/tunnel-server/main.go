// Command tunnel-server accepts tunnel-agent connections and serves routes:
// client endpoints whose connections reach a database behind an agent.
package main

import "github.com/tunnelrelay/tunnel/internal/cli"

func main() { cli.Main("tunnel-server", newRootCmd()) }
