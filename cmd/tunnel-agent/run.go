package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/pidfile"
	"github.com/tunnelrelay/tunnel/internal/proto"
	"github.com/tunnelrelay/tunnel/internal/version"
)

func (a *app) runCmd() *cobra.Command {
	var pidFile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Connect to the server and serve it until SIGINT or SIGTERM, reconnecting forever",
		Long: `run connects to the server named in the config and serves sessions to the
declared targets. When the connection fails or drops it reconnects, with
exponential backoff and jitter (first retry within half a second, then up to
30s apart), forever. When the server says it is restarting, the agent retries
within a second, for up to two minutes, then as before.

[server] transport picks the connection: "auto" (the default) tries QUIC over
UDP and falls back to TLS over TCP, to the same port, when QUIC gets no
answer within 3s, logging why; it tries QUIC again 5 minutes later. "tls" and
"quic" use only that one.

[server] proxy = "http://[user:password@]host:port" reaches the server
through an HTTP CONNECT proxy; without the key, HTTPS_PROXY and NO_PROXY
decide, and proxy = "direct" ignores them. Through a proxy "auto" uses TLS
only (QUIC cannot pass one) and "quic" is a config error.

On SIGHUP (or 'tunnel-agent reload') it re-reads the config: added targets
can be used at once, removed ones refuse new sessions, sessions in flight
continue and the connection stays up. A new agent.key moves the agent to a
new connection that uses it. Other changes need a restart; the log says which.

On SIGINT or SIGTERM it tells the server to send no more sessions, lets the
sessions in flight finish for up to agent.drain_timeout (default 30s), then
exits. A second signal stops it at once. Meanwhile the server holds new
sessions for the agent's successor (a restarted agent) for up to its
limits.open_timeout.

It records its process id for 'tunnel-agent reload' in --pid-file (default:
tunnel-agent-NAME.pid in $RUNTIME_DIRECTORY, /run/tunnel-agent or
$XDG_RUNTIME_DIR, the first that is writable).

With [agent] metrics_listen set (e.g. "127.0.0.1:9102"), it serves
Prometheus metrics at http://ADDRESS/metrics, without authentication: bind
it to loopback or a private interface. docs/METRICS.md lists them.

It exits only on SIGINT/SIGTERM (code 0), a bad config (code 2), when
the server refuses this agent for good (code 3): unknown, removed or
disabled agent, or a key the server does not know, or at start when
metrics_listen cannot be bound (code 1).`,
		Example: `  tunnel-agent run
  tunnel-agent run --config /etc/tunnel-agent.toml --log debug
  tunnel-agent run --pid-file /run/tunnel-agent/agent.pid`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// First of all: SIGHUP's default action ends the process, and
			// a reload may come while the agent is still starting.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
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
			if path, err := pidfile.Write(pidFile, cfg.Agent.Name); err != nil {
				log.Warn("no pid file: 'tunnel-agent reload' cannot find this agent; send SIGHUP yourself", logging.KeyErr, err)
			} else {
				defer pidfile.Remove(path)
			}
			err = serveAgent(cmd.Context(), eng, cfg, log, hup)
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
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "file to record the process id in, for 'tunnel-agent reload'")
	return cmd
}

// serveAgent runs eng until ctx is done, then drains it; SIGHUP reloads
// the config meanwhile.
func serveAgent(ctx context.Context, eng *agent.Agent, cfg *config.Agent, log *slog.Logger, hup <-chan os.Signal) error {
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	done := make(chan error, 1)
	go func() { done <- eng.Run(runCtx) }()
	for {
		select {
		case <-hup:
			cfg = reloadAgent(eng, cfg, log)
		case err := <-done:
			return err
		case <-ctx.Done():
			drainAgent(eng, cfg, log)
			cancelRun()
			return <-done
		}
	}
}

// drainAgent waits for the sessions in flight, up to agent.drain_timeout
// or another SIGINT/SIGTERM.
func drainAgent(eng *agent.Agent, cfg *config.Agent, log *slog.Logger) {
	timeout := cfg.Agent.DrainTimeout.Duration
	log.Info("stopping: no new sessions; waiting for the ones in flight", "drain_timeout", timeout)
	ctx, cancel := cli.DrainContext(timeout, log, "second signal: stopping now")
	defer cancel()
	if left := eng.Drain(ctx); left > 0 {
		log.Warn("closing sessions still open", "sessions", left)
	}
}

// reloadAgent applies what it can of the config file as it is now to the
// running engine, and returns the config in effect. A config that does not
// load changes nothing.
func reloadAgent(eng *agent.Agent, cur *config.Agent, log *slog.Logger) *config.Agent {
	next, err := config.LoadAgent(cur.Path)
	if err == nil && next.Agent.Name != cur.Agent.Name {
		err = fmt.Errorf("agent.name changed from %q to %q: that is another agent; restart to use it", cur.Agent.Name, next.Agent.Name)
	}
	var opt agent.Options
	if err == nil {
		opt, err = engineOptions(next, log)
	}
	var change agent.TargetChange
	if err == nil {
		change, err = eng.SetTargets(opt.Targets)
	}
	if err != nil {
		log.Error("reload failed; the running config stays in effect", "config", cur.Path, logging.KeyErr, err)
		return cur
	}
	// The key in use, not the one cur read: a rotation may have changed it
	// since, and written it to the file.
	newKey := keyInUse(eng) != fileKeyFingerprint(next) || next.Server.CA != cur.Server.CA ||
		next.Server.ServerName != cur.Server.ServerName
	if newKey {
		eng.SetTLSConfig(opt.TLSConfig)
	}
	log.Info("config reloaded", "config", cur.Path, "targets_added", change.Added, "targets_removed", change.Removed,
		"targets_changed", change.Changed, "new_credential", newKey)
	if keys := restartNeeded(cur, next); len(keys) > 0 {
		log.Warn("these settings changed but take effect only after a restart", "keys", keys)
	}
	return next
}

// restartNeeded lists the keys whose change a reload cannot apply.
func restartNeeded(cur, next *config.Agent) []string {
	var keys []string
	diff := func(key string, changed bool) {
		if changed {
			keys = append(keys, key)
		}
	}
	diff("server.address", cur.Server.Address != next.Server.Address)
	diff("server.transport", cur.Server.Transport != next.Server.Transport)
	diff("server.proxy", cur.ServerProxy.String() != next.ServerProxy.String())
	a, b := cur.Agent, next.Agent
	diff("agent.max_sessions", a.MaxSessions != b.MaxSessions)
	diff("agent.dial_timeout", a.DialTimeout != b.DialTimeout)
	diff("agent.handshake_timeout", a.HandshakeTimeout != b.HandshakeTimeout)
	diff("agent.half_close_timeout", a.HalfCloseTimeout != b.HalfCloseTimeout)
	diff("agent.max_header_size", a.MaxHeaderSize != b.MaxHeaderSize)
	diff("agent.metrics_listen", a.MetricsListen != b.MetricsListen)
	return slices.Clip(keys)
}
