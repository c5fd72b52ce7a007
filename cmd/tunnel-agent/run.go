package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/version"
)

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Connect to the server and serve it until SIGINT or SIGTERM, reconnecting forever",
		Long: `run connects to the server named in the config and serves sessions to the
declared targets. When the connection fails or drops it reconnects, with
exponential backoff and jitter (first retry within half a second, then up to
30s apart), forever.

[server] transport picks the connection: "auto" (the default) tries QUIC over
UDP and falls back to TLS over TCP, to the same port, when QUIC gets no
answer within 3s, logging why; it tries QUIC again 5 minutes later. "tls" and
"quic" use only that one.

With [agent] metrics_listen set (e.g. "127.0.0.1:9102"), it serves
Prometheus metrics at http://ADDRESS/metrics, without authentication: bind
it to loopback or a private interface. docs/METRICS.md lists them.

It exits only on SIGINT/SIGTERM (code 0), a bad config (code 2), when
the server refuses this agent for good (code 3): unknown, removed or
disabled agent, or a key the server does not know, or at start when
metrics_listen cannot be bound (code 1).`,
		Example: `  tunnel-agent run
  tunnel-agent run --config /etc/tunnel-agent.toml --log debug`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := a.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg, eng, err := a.load(log)
			if err != nil {
				return err
			}
			names := make([]string, len(cfg.Targets))
			for i, t := range cfg.Targets {
				names[i] = t.Name
			}
			log.Info("tunnel-agent starting", "version", version.Get().Version, "config", cfg.Path,
				"agent", cfg.Agent.Name, "server", cfg.Server.Address, "targets", names)
			if len(names) == 0 {
				log.Warn("no [[targets]] in the config: the agent connects but can serve no route", "config", cfg.Path)
			}
			stopMetrics, err := serveMetrics(cmd.Context(), cfg, eng, log)
			if err != nil {
				return err
			}
			defer stopMetrics()
			err = eng.Run(cmd.Context())
			if err == nil {
				log.Info("tunnel-agent stopped")
			}
			var ref *proto.Refuse
			if errors.As(err, &ref) {
				return &cli.ExitError{Code: cli.ExitRefused, Err: fmt.Errorf("refused by server %s: %s", cfg.Server.Address, ref.Message)}
			}
			return err
		},
	}
}
