package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/metrics"
	"github.com/tunnelrelay/tunnel/internal/server"
	"github.com/tunnelrelay/tunnel/internal/store"
	"github.com/tunnelrelay/tunnel/internal/version"
	"github.com/tunnelrelay/tunnel/pkg/auth"
	"github.com/tunnelrelay/tunnel/pkg/mux"
)

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Serve agents, routes and the admin endpoint until SIGINT or SIGTERM",
		Long: `run serves agents on server.listen, every route's client endpoint, and the
admin endpoint on admin.listen. Routes and agents come from the database
and survive restarts.

The admin endpoint also serves a status page at / (sign in with the admin
token) and Prometheus metrics at /metrics, to requests that carry the admin
token as the CLI does ("Authorization: Bearer TOKEN") or the status page's
cookie; docs/METRICS.md lists them, docs/API.md describes the JSON API.

On SIGHUP it re-reads the config file and the certificates it names:
server.cert/key, server.ca and postgres.cert/key are used from then on,
and limits.max_sessions_per_agent, limits.open_timeout and
limits.drain_timeout apply to what starts after. Agents and sessions stay
connected. Other changes need a restart; the log says which. A config that
does not load changes nothing.

On SIGINT or SIGTERM it stops accepting agents and clients, asks every agent
to reconnect (they retry within a second for two minutes, so they are back
as soon as the server is), lets sessions in flight finish for up to limits.drain_timeout,
then closes the rest and exits. A second signal closes them at once.`,
		Example: `  tunnel-server run --config /etc/tunnel-server/tunnel-server.toml
  tunnel-server run --log info,mux=debug --json`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// First of all: SIGHUP's default action ends the process, and
			// a reload may come while the server is still starting.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			log, err := a.Logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			tuneGC()
			return serve(cmd.Context(), cfg, log, hup)
		},
	}
}

// serverGCPercent is the server's garbage collection target, unless GOGC
// says otherwise. A server's heap is mostly long-lived per-connection state
// (TLS and QUIC connections, one per agent, and a few goroutines each) and
// it allocates little while relaying (buffers are pooled), so collecting
// at half the live heap instead of all of it costs little CPU and keeps
// the memory per connected agent about 10% lower (tunnel-bench, 1,000
// idle agents over QUIC: 103 KiB of RSS per agent at 100, 93 at 50).
const serverGCPercent = 50

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(serverGCPercent)
	}
}

// serve runs the server described by cfg until ctx is done.
// A SIGHUP on hup reloads the config.
func serve(ctx context.Context, cfg *config.Server, log *slog.Logger, hup <-chan os.Signal) error {
	var certs serverCerts
	if err := certs.load(cfg); err != nil {
		return cli.Usage(err)
	}
	tlsConf := auth.ServerTLSConfig()
	certs.agents.Install(tlsConf)
	pgTLS := &tls.Config{}
	certs.postgres.Install(pgTLS)
	token, err := readToken(cfg.Admin.TokenFile)
	if err != nil {
		return cli.Usage(err)
	}
	st, err := store.Open(ctx, store.Config{Path: cfg.Server.Database})
	if err != nil {
		return fmt.Errorf("server.database: %w", err)
	}
	defer st.Close()

	l := &cfg.Limits
	// Agents connect with TLS over TCP or QUIC over UDP, to the same port.
	ln, err := mux.Listen(cfg.Server.Listen, tlsConf, &mux.Config{
		HandshakeTimeout: l.HandshakeTimeout.Duration,
		HalfCloseTimeout: l.HalfCloseTimeout.Duration + 5*time.Second,
		AcceptBacklog:    mux.ServerAcceptBacklog,
		MaxStreams:       mux.ServerMaxStreams,
		Logger:           logging.Module(log, "mux"),
	})
	if err != nil {
		return fmt.Errorf("server.listen: %w", err)
	}
	srv, err := server.New(server.Options{
		Store:               st,
		Logger:              log,
		Version:             version.Get().Version,
		HandshakeTimeout:    l.HandshakeTimeout.Duration,
		OpenTimeout:         l.OpenTimeout.Duration,
		MaxSessionsPerAgent: l.MaxSessionsPerAgent,
		MaxHeaderSize:       l.MaxHeaderSize,
		HeartbeatInterval:   l.HeartbeatInterval.Duration,
		HeartbeatTimeout:    l.HeartbeatTimeout.Duration,
		HalfCloseTimeout:    l.HalfCloseTimeout.Duration,
		PostgresTLS:         pgTLS,
		PostgresDomain:      cfg.Postgres.Domain,
		CAFingerprint:       certs.caFingerprint,
	})
	if err != nil {
		ln.Close()
		return err
	}
	if err := srv.Open(ctx, ln); err != nil {
		ln.Close()
		return err
	}

	adminLn, err := listenAdmin(cfg.Admin)
	if err != nil {
		srv.Close(ctx)
		return fmt.Errorf("admin.listen: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           adminHandler(srv, token, logging.Module(log, "admin")),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logging.Module(log, "admin").Handler(), slog.LevelDebug),
	}
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpSrv.Serve(adminLn) }()
	log.Info("tunnel-server running", "version", version.Get().Version, "config", cfg.Path,
		"agents", ln.Addr().String(), "transports", "tls (tcp), quic (udp)", "admin", cfg.Admin.Listen)

	// failed is why the server stops on its own, for a non-zero exit
	// (systemd restarts it then).
	var failed error
wait:
	for {
		select {
		case <-hup:
			cfg = reloadServer(cfg, srv, &certs, log)
			l = &cfg.Limits
		case <-ctx.Done():
			break wait
		case err := <-httpDone:
			log.Error("admin endpoint stopped", logging.KeyErr, err)
			failed = fmt.Errorf("admin endpoint stopped: %w", err)
			break wait
		case err := <-srv.Failed():
			failed = fmt.Errorf("agent listener stopped: %w", err)
			break wait
		}
	}
	log.Info("shutting down", "drain_timeout", l.DrainTimeout.Duration)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	httpSrv.Shutdown(shutdownCtx)
	cancel()
	drainCtx, cancel := cli.DrainContext(l.DrainTimeout.Duration, log, "second signal: closing the sessions in flight now")
	defer cancel()
	err = srv.Close(drainCtx)
	log.Info("stopped")
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if failed != nil {
		return failed
	}
	return err
}

// adminHandler serves the admin API and, with the same token, the
// server's Prometheus metrics at /metrics.
func adminHandler(srv *server.Server, token string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.Path, admin.Protect(token, metrics.Handler(srv.Gatherer(), log)))
	mux.Handle("/", admin.Handler(srv, token, log))
	return mux
}

// listenAdmin opens the admin endpoint: loopback TCP, or a unix socket only
// its owner may use.
func listenAdmin(a config.AdminSection) (net.Listener, error) {
	network, addr := a.Network()
	if network != "unix" {
		return net.Listen(network, addr)
	}
	// A socket file left by a server that died is in the way; one that
	// answers belongs to a running server.
	if c, err := net.Dial("unix", addr); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: another tunnel-server is listening there", addr)
	}
	os.Remove(addr)
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(addr, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// serverCerts are the certificates the server presents, replaceable on
// SIGHUP.
type serverCerts struct {
	agents   auth.CertSource // server.cert and the CA, to agents
	postgres auth.CertSource // postgres.cert, or server.cert, to PostgreSQL clients
	// caFingerprint is that of server.ca, read at each load, for
	// enrollment tokens.
	caFingerprint string
}

// load reads the certificates cfg names and makes them current; on an
// error neither changes.
func (c *serverCerts) load(cfg *config.Server) error {
	certPEM, err := os.ReadFile(cfg.Server.Cert)
	if err != nil {
		return fmt.Errorf("server.cert: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.Server.Key)
	if err != nil {
		return fmt.Errorf("server.key: %w", err)
	}
	agents, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("server.cert and server.key: %w", err)
	}
	postgres := agents
	// Agents get the CA in the chain, for `tunnel-agent enroll` to pin.
	chainPEM, caFingerprint, err := withCA(cfg, certPEM)
	if err != nil {
		return err
	}
	if agents, err = tls.X509KeyPair(chainPEM, keyPEM); err != nil {
		return fmt.Errorf("server.cert and server.key: %w", err)
	}
	if cfg.Postgres.Cert != "" {
		if certPEM, err = os.ReadFile(cfg.Postgres.Cert); err != nil {
			return fmt.Errorf("postgres.cert: %w", err)
		}
		if keyPEM, err = os.ReadFile(cfg.Postgres.Key); err != nil {
			return fmt.Errorf("postgres.key: %w", err)
		}
		if postgres, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return fmt.Errorf("postgres.cert and postgres.key: %w", err)
		}
	}
	c.agents.Store(&agents)
	c.postgres.Store(&postgres)
	c.caFingerprint = caFingerprint
	return nil
}

// reloadServer applies what it can of the config file as it is now, and
// returns the config in effect. A config or certificate that does not load
// changes nothing.
func reloadServer(cur *config.Server, srv *server.Server, certs *serverCerts, log *slog.Logger) *config.Server {
	next, err := config.LoadServer(cur.Path)
	if err == nil {
		err = certs.load(next)
	}
	if err != nil {
		log.Error("reload failed; the running config stays in effect", "config", cur.Path, logging.KeyErr, err)
		return cur
	}
	srv.SetLimits(next.Limits.MaxSessionsPerAgent, next.Limits.OpenTimeout.Duration)
	srv.SetCAFingerprint(certs.caFingerprint)
	log.Info("config reloaded", "config", cur.Path, "max_sessions_per_agent", next.Limits.MaxSessionsPerAgent,
		"open_timeout", next.Limits.OpenTimeout.Duration, "drain_timeout", next.Limits.DrainTimeout.Duration)
	if keys := serverRestartNeeded(cur, next); len(keys) > 0 {
		log.Warn("these settings changed but take effect only after a restart", "keys", keys)
	}
	return next
}

// serverRestartNeeded lists the keys whose change a reload cannot apply.
func serverRestartNeeded(cur, next *config.Server) []string {
	var keys []string
	diff := func(key string, changed bool) {
		if changed {
			keys = append(keys, key)
		}
	}
	diff("server.listen", cur.Server.Listen != next.Server.Listen)
	diff("server.database", cur.Server.Database != next.Server.Database)
	diff("admin.listen", cur.Admin.Listen != next.Admin.Listen)
	diff("admin.token_file", cur.Admin.TokenFile != next.Admin.TokenFile)
	diff("postgres.domain", cur.Postgres.Domain != next.Postgres.Domain)
	a, b := cur.Limits, next.Limits
	diff("limits.handshake_timeout", a.HandshakeTimeout != b.HandshakeTimeout)
	diff("limits.heartbeat_interval", a.HeartbeatInterval != b.HeartbeatInterval)
	diff("limits.heartbeat_timeout", a.HeartbeatTimeout != b.HeartbeatTimeout)
	diff("limits.half_close_timeout", a.HalfCloseTimeout != b.HalfCloseTimeout)
	diff("limits.max_header_size", a.MaxHeaderSize != b.MaxHeaderSize)
	return keys
}
