package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/version"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

type app struct {
	cli.Globals
}

func newRootCmd() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "tunnel-agent",
		Short: "Give tunnel-server access to the databases this host can reach, dialing out only",
		Long: `tunnel-agent runs on a host inside a private network. It connects out to
tunnel-server (no inbound port is opened) and keeps that one connection up,
reconnecting forever. For each database session the server asks for, it
dials a target its own config declares, by name, and nothing else.

Its config, tunnel-agent.toml, is written by 'tunnel-agent enroll' (with a
token from 'tunnel-server agent add NAME --token') or by 'tunnel-server
agent add'; add [[targets]] to it. Exit codes: 0 stopped by a signal, 1
error, 2 bad config or usage, 3 refused by the server for good (unknown,
removed or disabled agent; wrong key; enrollment token refused).`,
		Example: `  tunnel-agent enroll --server tunnel.example.com:7443 --token tse_... --ca-fingerprint sha256:...
  tunnel-agent check
  tunnel-agent run --config /etc/tunnel-agent.toml
  tunnel-agent run --log debug --json`,
		Version: version.Get().String(),
	}
	root.SetFlagErrorFunc(cli.FlagErrors)
	root.SetVersionTemplate("tunnel-agent {{.Version}}\n")
	a.Register(root, config.AgentFile)
	root.AddCommand(a.runCmd(), a.checkCmd(), a.reloadCmd(), a.enrollCmd(), a.rotateCmd(), cli.VersionCmd("tunnel-agent"))
	return root
}

// load finds and loads the config and builds the engine from it.
func (a *app) load(log *slog.Logger) (*config.Agent, *agent.Agent, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	opt, err := engineOptions(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	eng, err := agent.New(opt)
	if err != nil {
		return nil, nil, cli.Usage(err)
	}
	return cfg, eng, nil
}

// loadConfig finds and loads the config.
func (a *app) loadConfig() (*config.Agent, error) {
	path, err := config.FindAgent(a.Config)
	if err != nil {
		return nil, cli.Usage(err)
	}
	cfg, err := config.LoadAgent(path)
	if err != nil {
		return nil, cli.Usage(err)
	}
	return cfg, nil
}

// engineOptions turns a loaded config into the engine's options.
func engineOptions(cfg *config.Agent, log *slog.Logger) (agent.Options, error) {
	key, err := auth.ParseAgentKey([]byte(cfg.Agent.Key.Reveal()))
	if err != nil {
		return agent.Options{}, cli.Usage(fmt.Errorf("%s: agent.key: %w", cfg.Path, err))
	}
	tlsConf, err := auth.ClientConfig(cfg.Agent.Name, key, []byte(cfg.Server.CA), cfg.Server.ServerName)
	if err != nil {
		return agent.Options{}, cli.Usage(fmt.Errorf("%s: %w", cfg.Path, err))
	}
	return agent.Options{
		Name:             cfg.Agent.Name,
		ServerAddress:    cfg.Server.Address,
		TLSConfig:        tlsConf,
		Targets:          engineTargets(cfg),
		Version:          version.Get().Version,
		MaxSessions:      cfg.Agent.MaxSessions,
		DialTimeout:      cfg.Agent.DialTimeout.Duration,
		HandshakeTimeout: cfg.Agent.HandshakeTimeout.Duration,
		HalfCloseTimeout: cfg.Agent.HalfCloseTimeout.Duration,
		MaxHeaderSize:    cfg.Agent.MaxHeaderSize,
		Transport:        cfg.Server.Transport,
		Keys:             newFileKeys(cfg),
		Proxy:            cfg.ServerProxy.URL,
		Logger:           log,
	}, nil
}

func engineTargets(cfg *config.Agent) []agent.Target {
	targets := make([]agent.Target, len(cfg.Targets))
	for i, t := range cfg.Targets {
		targets[i] = agent.Target{
			Name:          t.Name,
			Address:       t.Address,
			ProxyProtocol: t.ProxyProtocol,
			TLS:           t.TLS,
			TLSCA:         t.TLSCA,
			TLSServerName: t.TLSServerName,
		}
	}
	return targets
}
