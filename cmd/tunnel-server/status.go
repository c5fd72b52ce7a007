package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/cli"
)

func (a *app) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "status",
		Short:   "Show agents, routes, live sessions and bytes moved",
		Example: "  tunnel-server status --config /etc/tunnel-server/tunnel-server.toml",
		Args:    cli.NoArgs,
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, _ []string) error {
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "tunnel-server %s, up %s, agents connect to %s (TLS on TCP, QUIC on UDP)\n\n", st.Version,
				time.Since(st.Started).Round(time.Second), st.Listen)
			fmt.Fprintln(out, "AGENTS")
			printAgents(cmd, st.Agents)
			fmt.Fprintln(out, "\nROUTES")
			printRoutes(cmd, st.Routes)
			fmt.Fprintf(out, "\nSESSIONS (%d)\n", len(st.Sessions))
			printSessions(cmd, st.Sessions)
			return nil
		}),
	}
}

func printSessions(cmd *cobra.Command, sessions []admin.Session) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tROUTE\tAGENT\tTARGET\tCLIENT\tSTARTED\tBYTES UP\tBYTES DOWN")
	for _, s := range sessions {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", s.ID, s.Route, s.Agent, s.Target, s.Client, ago(s.Started), s.BytesUp, s.BytesDown)
	}
	w.Flush()
}
