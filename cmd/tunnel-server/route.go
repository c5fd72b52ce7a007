package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

func (a *app) routeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Add, list and remove routes: client endpoints that reach an agent's target",
		Example: `  tunnel-server route add acme-dw --agent acme --target warehouse --listen 127.0.0.1:15432
  tunnel-server route list
  tunnel-server route remove acme-dw`,
	}
	cmd.AddCommand(a.routeAddCmd(), a.routeListCmd(), a.routeRemoveCmd())
	return cmd
}

func (a *app) routeAddCmd() *cobra.Command {
	var req admin.AddRouteRequest
	var isDefault bool
	cmd := &cobra.Command{
		Use:   "add NAME --agent A --target T --listen ADDR [--protocol tcp|postgres|mysql] [--allow CIDR]...",
		Short: "Add a route; its listener opens at once",
		Long: `add creates a client endpoint on ADDR: every connection to it reaches
target T of agent A (a name the agent declares in its own config). The
listener opens before the command returns; a port in use or an unknown
agent is an error and nothing is created.

--protocol says what clients speak:
  tcp       bytes are relayed as they are; a refused client is disconnected.
  postgres  PostgreSQL clients: TLS from the client ends at the server, and a
            refused client gets a PostgreSQL error saying why. Several
            postgres routes can share one ADDR: a client picks its route by
            host name (ROUTE.DOMAIN, with [postgres] domain in the server
            config, over TLS) or with options=tunnel_route=ROUTE in its
            connection string; one that names none gets the address's
            default route (--default).
  mysql     MySQL and MariaDB clients: a refused client gets a MySQL error.

--allow restricts the clients by address (CIDR or single IP, repeatable).
A tcp client outside them is disconnected before a byte is read; postgres
and mysql clients are told. Without --allow every client the listen
address admits may connect.`,
		Example: `  tunnel-server route add acme-dw --agent acme --target warehouse --listen 127.0.0.1:15432
  tunnel-server route add acme-dw --agent acme --target warehouse --listen 0.0.0.0:15432 --allow 10.1.0.0/16 --allow 192.0.2.7
  tunnel-server route add acme-pg --agent acme --target warehouse --listen 0.0.0.0:5432 --protocol postgres
  tunnel-server route add beta-pg --agent beta --target main --listen 0.0.0.0:5432 --protocol postgres
  tunnel-server route add acme-my --agent acme --target orders --listen 0.0.0.0:3306 --protocol mysql`,
		Args: cli.ExactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			for _, f := range []struct{ flag, value string }{{"--agent", req.Agent}, {"--target", req.Target}, {"--listen", req.Listen}} {
				if f.value == "" {
					return cli.Usage(fmt.Errorf("%s is required", f.flag))
				}
			}
			if cmd.Flags().Changed("default") {
				req.Default = &isDefault
			}
			r, err := c.AddRoute(ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Route %q (%s) listens on %s and reaches target %q of agent %q.\n",
				r.Name, r.Protocol, r.Listen, r.Target, r.Agent)
			if r.Protocol == dbproxy.ProtocolPostgres {
				if r.Default {
					fmt.Fprintln(cmd.OutOrStdout(), "It is the address's default route: clients that name no route get it.")
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "Clients reach it by naming it: options=tunnel_route=%s, or its host name over TLS.\n", r.Name)
				}
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&req.Agent, "agent", "", "the agent the route goes through (required)")
	f.StringVar(&req.Target, "target", "", "the target name, as the agent declares it (required)")
	f.StringVar(&req.Listen, "listen", "", "host:port clients connect to (required)")
	f.StringVar(&req.Protocol, "protocol", "tcp", "what clients speak: tcp, postgres or mysql")
	f.BoolVar(&isDefault, "default", false, "postgres: clients on ADDR that name no route get this one (default: true for the first route on ADDR)")
	f.StringArrayVar(&req.Allow, "allow", nil, "client network allowed to connect, as CIDR or IP; repeatable (default: all)")
	f.IntVar(&req.MaxSessions, "max-sessions", 0, "most concurrent sessions on this route (default: no route limit)")
	return cmd
}

func (a *app) routeListCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List routes and their listeners",
		Example: "  tunnel-server route list",
		Args:    cli.NoArgs,
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, _ []string) error {
			routes, err := c.Routes(ctx)
			if err != nil {
				return err
			}
			printRoutes(cmd, routes)
			return nil
		}),
	}
}

func printRoutes(cmd *cobra.Command, routes []admin.Route) {
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tLISTEN\tAGENT\tTARGET\tPROTOCOL\tDEFAULT\tALLOW\tSTATE\tSESSIONS\tBYTES UP\tBYTES DOWN")
	for _, r := range routes {
		state := "listening"
		if !r.Listening {
			state = "not listening: " + r.Error
		}
		// Only PostgreSQL routes share an address; any other is its
		// address's one route.
		def := "-"
		if r.Protocol == dbproxy.ProtocolPostgres {
			def = map[bool]string{true: "yes", false: "no"}[r.Default]
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n", r.Name, r.Listen, r.Agent, r.Target, r.Protocol,
			def, joinOrDash(r.Allow), state, r.Sessions, r.BytesUp, r.BytesDown)
	}
	w.Flush()
}

func (a *app) routeRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a route and close its listener",
		Long: `remove deletes the route and closes its listener at once. Sessions already
running through it go on until their client or database ends them.`,
		Example: "  tunnel-server route remove acme-dw",
		Args:    cli.ExactArgs(1),
		RunE: a.withClient(func(ctx context.Context, c *admin.Client, cmd *cobra.Command, args []string) error {
			if err := c.RemoveRoute(ctx, args[0]); err != nil {
				return notFound(err, "route", args[0])
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Route %q removed.\n", args[0])
			return nil
		}),
	}
}
