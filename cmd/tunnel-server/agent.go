package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/server"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

func (a *app) agentCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Register, list, rotate, disable and remove agents",
		Example: `  tunnel-server agent add acme --token
  tunnel-server agent add acme --out acme.toml
  tunnel-server agent list
  tunnel-server agent rotate acme
  tunnel-server agent disable acme
  tunnel-server agent remove acme`,
	}
	cmd.AddCommand(a.agentAddCmd(), a.agentListCmd(), a.agentRotateCmd(),
		a.agentSetCmd("disable", true), a.agentSetCmd("enable", false), a.agentRemoveCmd())
	return cmd
}

func (a *app) agentAddCmd() *cobra.Command {
	var (
		out     string
		token   bool
		expires time.Duration
	)
	cmd := &cobra.Command{
		Use:   "add NAME [--token [--expires 24h] | --out FILE]",
		Short: "Register an agent: with a one-time enrollment token, or with a config file made here",
		Long: `With --token, add registers the agent without a key and prints a one-time
enrollment token, the fingerprint of the server's CA and the exact
'tunnel-agent enroll' command to run on the agent's host. There, enroll makes
the agent's key (which never leaves that host), checks this server by its CA
fingerprint, registers the key with the token, and writes the agent's config.
The token works once, until it expires (--expires, default 24h, at most
720h); the server keeps only its hash. Until it enrolls, the agent is listed
as "waiting for enrollment" and no key is accepted for it. Running add
--token again for an agent still waiting issues a new token and cancels the
old one (for a token that expired or was lost).

Without --token, add makes a new key for the agent here, registers the key's
fingerprint with the running server (the server never holds the key), and
writes a tunnel-agent config with the server's address, its CA and the key,
mode 0600. Copy that file to the agent's host (as /etc/tunnel-agent.toml,
say), declare the databases the agent may reach as [[targets]], and run
'tunnel-agent run'. The file is the agent's credential: keep it private.`,
		Example: `  tunnel-server agent add acme --token              # prints the tunnel-agent enroll command
  tunnel-server agent add acme --token --expires 1h
  tunnel-server agent add acme                      # writes ./tunnel-agent-acme.toml
  tunnel-server agent add acme --out /tmp/acme.toml
  tunnel-server agent add acme --out - | ssh bastion 'umask 077; cat > /etc/tunnel-agent.toml'`,
		Args: cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if token && cmd.Flags().Changed("out") {
				return cli.Usage(errors.New("--token and --out do not go together: with --token, 'tunnel-agent enroll' writes the config on the agent's host"))
			}
			if token {
				return a.addAgentToken(cmd, args[0], expires)
			}
			if cmd.Flags().Changed("expires") {
				return cli.Usage(errors.New("--expires goes with --token"))
			}
			return a.addAgent(cmd, args[0], out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", `file to write the agent config to, or "-" for stdout (default ./tunnel-agent-NAME.toml)`)
	f.BoolVar(&token, "token", false, "register the agent for enrollment: print a one-time token for 'tunnel-agent enroll' instead of writing a config")
	f.DurationVar(&expires, "expires", server.DefaultEnrollTokenTTL, "how long the enrollment token is valid (1m to 720h)")
	return cmd
}

func (a *app) addAgent(cmd *cobra.Command, name, out string) error {
	if err := auth.CheckName("agent", name); err != nil {
		return cli.Usage(err)
	}
	client, cfg, err := a.adminClient()
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(cfg.Server.CA)
	if err != nil {
		return fmt.Errorf("server.ca: %w", err)
	}
	key, err := auth.NewAgentKey()
	if err != nil {
		return err
	}
	tmpl := config.AgentTemplate{
		Agent:         name,
		ServerAddress: cfg.Server.PublicAddress,
		CAPEM:         string(caPEM),
		KeyPEM:        string(key.PEM()),
		Created:       time.Now(),
	}
	if out == "" {
		out = "tunnel-agent-" + name + ".toml"
	}
	ctx := cmd.Context()
	if out == "-" {
		data, err := config.RenderAgent(tmpl)
		if err != nil {
			return err
		}
		if _, err := client.AddAgent(ctx, admin.AddAgentRequest{Name: name, Fingerprint: key.Fingerprint()}); err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(data)
		return err
	}
	// The file first: if it cannot be written, nothing is registered; if
	// registering fails, the file goes.
	if err := config.WriteAgentFile(out, tmpl); err != nil {
		return err
	}
	if _, err := client.AddAgent(ctx, admin.AddAgentRequest{Name: name, Fingerprint: key.Fingerprint()}); err != nil {
		os.Remove(out)
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), `Registered agent %q (key %s).
Its config is in %s (mode 0600; it holds the agent's private key).
Copy it to the agent's host as /etc/tunnel-agent.toml, declare the databases
the agent may reach as [[targets]] in it, then run: tunnel-agent run
`, name, key.Fingerprint(), out)
	return nil
}

func (a *app) agentListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List agents and whether they are connected",
		Example: "  tunnel-server agent list",
		Args:    cli.NoArgs,
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, _ []string) error {
			agents, err := c.Agents(ctx)
			if err != nil {
				return err
			}
			printAgents(cmd, agents)
			return nil
		}),
	}
}

// agentState is an agent's STATE in `agent list`, and its description when
// a shell completes its name.
func agentState(ag admin.Agent) string {
	state := "offline"
	switch {
	case ag.Online && ag.Disabled:
		state = "online, disabled"
	case ag.Online:
		state = "online"
	case ag.Disabled:
		state = "disabled"
	case ag.Waiting:
		state = "waiting for enrollment"
	}
	if ag.PendingFingerprint != "" {
		state += ", new key pending"
	}
	return state
}

func printAgents(cmd *cobra.Command, agents []admin.Agent) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTATE\tSINCE\tREMOTE\tTRANSPORT\tSESSIONS\tTARGETS\tVERSION")
	for _, ag := range agents {
		state, since, remote, transport, targets, ver := agentState(ag), "-", "-", "-", "-", "-"
		if ag.Online {
			since = ago(*ag.Since)
			remote, transport, ver = ag.Remote, ag.Transport, dash(ag.Version)
			targets = joinOrDash(ag.Targets)
		}
		if ag.Online && ag.Fallback != "" {
			transport += "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", ag.Name, state, since, remote, transport, ag.Sessions, targets, ver)
	}
	w.Flush()
	for _, ag := range agents {
		if ag.Online && ag.Fallback != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "* %s is on %s instead of QUIC: %s\n", ag.Name, ag.Transport, ag.Fallback)
		}
	}
}

func (a *app) agentSetCmd(verb string, disabled bool) *cobra.Command {
	short := "Disable an agent: drop its connection and refuse it until enabled"
	if !disabled {
		short = "Enable a disabled agent"
	}
	return &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Example: "  tunnel-server agent " + verb + " acme",
		Args:    cli.ExactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, args []string) error {
			if err := c.SetAgentDisabled(ctx, args[0], disabled); err != nil {
				return notFound(err, "agent", args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Agent %q %sd.\n", args[0], verb)
			return nil
		}),
	}
}

func (a *app) agentRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Unregister an agent and drop its connection",
		Long: `remove unregisters the agent: its live connection is dropped and its key is
refused from then on. Routes that use the agent must be removed first.`,
		Example: "  tunnel-server agent remove acme",
		Args:    cli.ExactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, args []string) error {
			if err := c.RemoveAgent(ctx, args[0]); err != nil {
				return notFound(err, "agent", args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Agent %q removed.\n", args[0])
			return nil
		}),
	}
}

// notFound rewords a 404 from the admin API.
func notFound(err error, kind, name string) error {
	var ae *admin.Error
	if errors.As(err, &ae) && ae.Status == 404 {
		return fmt.Errorf("no %s named %q", kind, name)
	}
	return err
}

func ago(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	return d.String() + " ago"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "," + x
	}
	return out
}
