package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/server"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

// addAgentToken registers name for enrollment and prints its token and the
// command that enrolls it.
func (a *app) addAgentToken(cmd *cobra.Command, name string, expires time.Duration) error {
	if err := auth.CheckName("agent", name); err != nil {
		return cli.Usage(err)
	}
	if expires < server.MinEnrollTokenTTL || expires > server.MaxEnrollTokenTTL {
		return cli.Usage(fmt.Errorf("--expires %v: an enrollment token is valid for %v to %v", expires, server.MinEnrollTokenTTL, server.MaxEnrollTokenTTL))
	}
	client, cfg, err := a.adminClient()
	if err != nil {
		return err
	}
	tok, err := client.IssueEnrollToken(cmd.Context(), name, admin.EnrollTokenRequest{ExpiresInSeconds: int64(expires / time.Second)})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if tok.Created {
		fmt.Fprintf(out, "Registered agent %q; it waits for enrollment.\n", name)
	} else {
		fmt.Fprintf(out, "New enrollment token for agent %q, which waits for enrollment; its previous token no longer works.\n", name)
	}
	fmt.Fprintf(out, "\nEnrollment token, for one use until %s (a secret until then):\n\n  %s\n",
		tok.Expires.UTC().Format("2006-01-02 15:04 MST"), tok.Token)
	enroll := fmt.Sprintf("tunnel-agent enroll --server %s --token %s", cfg.Server.PublicAddress, tok.Token)
	if tok.CAFingerprint != "" {
		enroll += " --ca-fingerprint " + tok.CAFingerprint
		fmt.Fprintf(out, "\nThe server's CA certificate has the fingerprint %s.\n", tok.CAFingerprint)
	}
	fmt.Fprintf(out, `
On the agent's host, run:

  %s

It makes the agent's key there (the key never leaves that host), checks this
server by its CA, registers the key and writes ./tunnel-agent.toml. Declare
the databases the agent may reach as [[targets]] in that file, then run:
tunnel-agent run --config tunnel-agent.toml
`, enroll)
	return nil
}

func (a *app) agentRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate NAME",
		Short: "Give a connected agent a new key, without dropping its sessions",
		Long: `rotate asks the connected agent for a new key. The agent makes it on its
host, announces it over its connection, stores it in its config file and
moves to a new connection that uses it; sessions on the old connection
finish there. Once the new key is in use the server refuses the old one.
rotate waits until then (at most 20 seconds) and prints the new key's
fingerprint.

The agent must be connected, and run a tunnel-agent that speaks protocol
version 2, with a config file it may rewrite. On the agent's host,
'tunnel-agent rotate' does the same without the server's help.`,
		Example: "  tunnel-server agent rotate acme",
		Args:    cli.ExactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, args []string) error {
			res, err := c.RotateAgentKey(ctx, args[0])
			if err != nil {
				return notFound(err, "agent", args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Agent %q now uses key %s (was %s); the old key is refused from now on.\n",
				res.Agent, res.Fingerprint, res.OldFingerprint)
			return nil
		}),
	}
}
