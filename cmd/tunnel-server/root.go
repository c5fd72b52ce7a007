package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/version"
)

// app is the state the commands share: the global flags.
type app struct {
	cli.Globals
}

func newRootCmd() *cobra.Command {
	a := &app{}
	root := &cobra.Command{
		Use:   "tunnel-server",
		Short: "Serve tunnel agents and the routes that reach databases through them",
		Long: `tunnel-server runs in the SaaS side's network. tunnel-agents inside customer
networks connect out to it (no inbound port on their side), and each route
is a client endpoint on this server whose connections reach one target
database of one agent.

Start with 'tunnel-server init', then 'tunnel-server run'. The agent, route
and status commands manage a running server through its admin endpoint, as
named in the same config file.`,
		Example: `  tunnel-server init --dir /etc/tunnel-server --hostname tunnel.example.com
  tunnel-server run --config /etc/tunnel-server/tunnel-server.toml
  tunnel-server agent add acme --token
  tunnel-server route add acme-dw --agent acme --target warehouse --listen 127.0.0.1:15432`,
		Version: version.Get().String(),
	}
	root.SetFlagErrorFunc(cli.FlagErrors)
	root.SetVersionTemplate("tunnel-server {{.Version}}\n")
	a.Register(root, config.ServerFile)
	root.AddCommand(
		a.initCmd(),
		a.runCmd(),
		a.agentCmd(),
		a.routeCmd(),
		a.statusCmd(),
		cli.VersionCmd("tunnel-server"),
	)
	a.registerCompletions(root)
	return root
}

// loadConfig finds and loads the server config.
func (a *app) loadConfig() (*config.Server, error) {
	path, err := config.FindServer(a.Config)
	if err != nil {
		return nil, cli.Usage(err)
	}
	cfg, err := config.LoadServer(path)
	if err != nil {
		return nil, cli.Usage(err)
	}
	return cfg, nil
}

// adminClient returns a client for the running server named by the config.
func (a *app) adminClient() (*admin.Client, *config.Server, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	token, err := readToken(cfg.Admin.TokenFile)
	if err != nil {
		return nil, nil, err
	}
	return admin.NewClient(cfg.Admin.Listen, token), cfg, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("admin token: %s is empty", path)
	}
	return token, nil
}

// withClient runs fn with an admin client; the common shape of the
// management commands.
func (a *app) withClient(fn func(ctx context.Context, c *admin.Client, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, _, err := a.adminClient()
		if err != nil {
			return err
		}
		return fn(cmd.Context(), c, cmd, args)
	}
}
