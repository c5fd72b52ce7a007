package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/logging"
)

func (a *app) checkCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Validate the config, dial each target, connect to the server once",
		Long: `check loads and validates the config, dials every declared target, and
connects to the server once to check the agent's credential (without
disturbing a running copy of the agent). It prints one line per check and
exits non-zero when any failed.

A target is dialed the way a session dials it: with proxy_protocol it gets
a PROXY header first (a LOCAL one, as there is no client), and with tls the
TLS negotiation and certificate checks run too, so a database that refuses
TLS or shows an untrusted certificate fails the check.

The server is reached the way run reaches it: through the HTTP proxy of
[server] proxy, or of HTTPS_PROXY unless NO_PROXY excludes the server (a
"proxy" line says which), over TLS only as QUIC cannot pass a proxy.`,
		Example: `  tunnel-agent check
  tunnel-agent check --config ./tunnel-agent.toml
  HTTPS_PROXY=http://proxy.corp:3128 tunnel-agent check`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, eng, err := a.load(logging.Discard())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintf(w, "config\tok\t%s (agent %q, %d targets)\n", cfg.Path, cfg.Agent.Name, len(cfg.Targets))
			if p := cfg.ServerProxy; p.URL != nil {
				fmt.Fprintf(w, "proxy\tused\tthe server is reached through HTTP proxy %s (from %s)\n", p, p.From)
			}
			failed := 0
			for _, r := range eng.Check(cmd.Context()) {
				state := "ok"
				if !r.OK {
					state = "FAILED"
					failed++
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", r.What, state, r.Detail)
			}
			w.Flush()
			if failed > 0 {
				return errors.New(plural(failed, "check") + " failed")
			}
			return nil
		},
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
