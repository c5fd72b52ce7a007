package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/pidfile"
)

func (a *app) reloadCmd() *cobra.Command {
	var pidFile string
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the running agent re-read its config (sends it SIGHUP)",
		Long: `reload finds the 'tunnel-agent run' process of this config's agent through
its pid file and sends it SIGHUP. The agent then re-reads the config: added
targets can be used at once, removed ones refuse new sessions, sessions in
flight continue and the connection to the server stays up. The agent's log
says what changed, and which changes need a restart.

Under systemd, 'systemctl reload tunnel-agent' does the same. Not available
on Windows: restart the service there.`,
		Example: `  tunnel-agent reload
  tunnel-agent reload --config /etc/tunnel-agent.toml
  tunnel-agent reload --pid-file /run/tunnel-agent/agent.pid`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if runtime.GOOS == "windows" {
				return fmt.Errorf("reload is not available on Windows: restart the tunnel-agent service")
			}
			name := ""
			if pidFile == "" {
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				name = cfg.Agent.Name
			}
			pid, file, err := pidfile.Find(pidFile, name)
			if err != nil {
				return err
			}
			proc, err := os.FindProcess(pid)
			if err == nil {
				err = proc.Signal(syscall.SIGHUP)
			}
			if err != nil {
				return fmt.Errorf("signal tunnel-agent (pid %d, from %s): %w (a stale pid file? is the agent running?)", pid, file, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Sent SIGHUP to tunnel-agent (pid %d, from %s); its log says what changed.\n", pid, file)
			return nil
		},
	}
	cmd.Flags().StringVar(&pidFile, "pid-file", "", "the pid file 'tunnel-agent run' wrote (default: found from the config's agent name)")
	return cmd
}
