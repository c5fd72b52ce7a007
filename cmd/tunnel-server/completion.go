package main

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/admin"
	"github.com/tunnelrelay/tunnel/pkg/dbproxy"
)

// completionTimeout bounds asking the running server for names while the
// shell waits for completions.
const completionTimeout = 2 * time.Second

// registerCompletions makes the shell complete what the commands under
// root take: agent and route names from the running server, and the
// values of flags that have a fixed set.
func (a *app) registerCompletions(root *cobra.Command) {
	anyAgent := func(admin.Agent) bool { return true }
	args := map[string]cobra.CompletionFunc{
		"agent remove":  a.completeAgents(anyAgent),
		"agent disable": a.completeAgents(func(ag admin.Agent) bool { return !ag.Disabled }),
		"agent enable":  a.completeAgents(func(ag admin.Agent) bool { return ag.Disabled }),
		"agent rotate":  a.completeAgents(func(ag admin.Agent) bool { return ag.Online }),
		"route remove":  a.completeRoutes,
	}
	for path, fn := range args {
		if c, _, err := root.Find(strings.Fields(path)); err == nil && c != root {
			c.ValidArgsFunction = fn
		}
	}
	if c, _, err := root.Find([]string{"route", "add"}); err == nil && c != root {
		c.ValidArgsFunction = cobra.NoFileCompletions // NAME is new
		_ = c.RegisterFlagCompletionFunc("agent", a.completeAgentFlag)
		_ = c.RegisterFlagCompletionFunc("target", a.completeTargets)
		_ = c.RegisterFlagCompletionFunc("protocol", cobra.FixedCompletions([]cobra.Completion{
			cobra.CompletionWithDesc(dbproxy.ProtocolTCP, "bytes relayed as they are"),
			cobra.CompletionWithDesc(dbproxy.ProtocolPostgres, "PostgreSQL clients, told why when refused"),
			cobra.CompletionWithDesc(dbproxy.ProtocolMySQL, "MySQL and MariaDB clients, told why when refused"),
		}, cobra.ShellCompDirectiveNoFileComp))
	}
	if c, _, err := root.Find([]string{"init"}); err == nil && c != root {
		_ = c.MarkFlagDirname("dir")
	}
}

// completeAgents offers, as a command's NAME, the names of the running
// server's agents that keep accepts.
func (a *app) completeAgents(keep func(admin.Agent) bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp // NAME is given already
		}
		return a.agentNames(cmd, keep), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeAgentFlag offers every agent's name as a flag's value.
func (a *app) completeAgentFlag(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return a.agentNames(cmd, func(admin.Agent) bool { return true }), cobra.ShellCompDirectiveNoFileComp
}

// agentNames returns the names of the running server's agents that keep
// accepts, each described by its state. When the server cannot be asked it
// returns none and says nothing: the shell is waiting.
func (a *app) agentNames(cmd *cobra.Command, keep func(admin.Agent) bool) []cobra.Completion {
	var out []cobra.Completion
	a.ask(cmd, func(ctx context.Context, c *admin.Client) error {
		agents, err := c.Agents(ctx)
		for _, ag := range agents {
			if keep(ag) {
				out = append(out, cobra.CompletionWithDesc(ag.Name, agentState(ag)))
			}
		}
		return err
	})
	return out
}

// completeTargets offers the targets that the agent named by --agent
// declared when it connected.
func (a *app) completeTargets(cmd *cobra.Command, _ []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	agent, _ := cmd.Flags().GetString("agent")
	var out []cobra.Completion
	if agent != "" {
		a.ask(cmd, func(ctx context.Context, c *admin.Client) error {
			agents, err := c.Agents(ctx)
			for _, ag := range agents {
				if ag.Name == agent {
					out = append(out, ag.Targets...)
				}
			}
			return err
		})
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// completeRoutes offers the names of the running server's routes.
func (a *app) completeRoutes(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []cobra.Completion
	a.ask(cmd, func(ctx context.Context, c *admin.Client) error {
		routes, err := c.Routes(ctx)
		for _, r := range routes {
			out = append(out, cobra.CompletionWithDesc(r.Name, r.Listen+" → "+r.Agent+"/"+r.Target))
		}
		return err
	})
	return out, cobra.ShellCompDirectiveNoFileComp
}

// ask runs fn with an admin client for the server the command's --config
// names, within completionTimeout. Errors are dropped on purpose: a
// completion has no place to report them.
func (a *app) ask(cmd *cobra.Command, fn func(context.Context, *admin.Client) error) {
	c, _, err := a.adminClient()
	if err != nil {
		return
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	_ = fn(ctx, c)
}
