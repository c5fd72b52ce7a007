// Package cli holds what the tunnel-agent and tunnel-server command trees
// share: the global flags (--config, --log, --json), building the logger,
// exit codes, and the one place where a command's error becomes a line on
// stderr and an exit status.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/internal/version"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // anything else
	ExitUsage   = 2 // bad flags, arguments or config
	ExitRefused = 3 // the server refused the agent for good
)

// ExitError carries an exit code with an error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Usage marks err as a usage or configuration error (exit code 2).
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: ExitUsage, Err: err}
}

// Globals are the flags every command has.
type Globals struct {
	Config string
	Log    string
	JSON   bool
}

// Register adds the global flags to root.
func (g *Globals) Register(root *cobra.Command, configName string) {
	f := root.PersistentFlags()
	f.StringVar(&g.Config, "config", "", "config file (default: "+configName+" next to the executable, in $XDG_CONFIG_HOME or ~/.config, or in /etc)")
	f.StringVar(&g.Log, "log", "info", "log level: trace, debug, info, warn or error; per module with name=level, e.g. info,mux=debug")
	f.BoolVar(&g.JSON, "json", false, "write logs as JSON")
	_ = root.MarkPersistentFlagFilename("config", "toml")
	_ = root.RegisterFlagCompletionFunc("log", completeLogLevels)
}

// Logger builds the logger the flags ask for, writing to w.
func (g *Globals) Logger(w io.Writer) (*slog.Logger, error) {
	l, err := logging.New(w, g.Log, g.JSON)
	if err != nil {
		return nil, Usage(fmt.Errorf("--log: %w", err))
	}
	return l, nil
}

// Main runs root with a context that SIGINT and SIGTERM cancel, prints an
// error as one "name: message" line on stderr, and exits with its code.
func Main(name string, root *cobra.Command) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, root, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// Run executes root with args and returns the exit code, printing any error
// to stderr. Tests call it directly.
func Run(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) int {
	root.SetArgs(args)
	AddDefaultCommands(root)
	root.SilenceErrors = true
	root.SilenceUsage = true
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	if isUsageError(err) {
		return ExitUsage
	}
	return ExitFailure
}

// isUsageError recognises cobra's own argument and flag errors, which are
// plain errors: flag errors through FlagErrors, and an unknown command by
// its message, which cobra makes with nothing else to tell it by.
func isUsageError(err error) bool {
	var fe *flagError
	return errors.As(err, &fe) || strings.HasPrefix(err.Error(), "unknown command ")
}

type flagError struct{ error }

// FlagErrors makes cobra's flag parsing errors usage errors; install it on
// the root command.
func FlagErrors(cmd *cobra.Command, err error) error { return &flagError{err} }

// ExactArgs is cobra.ExactArgs with a usage exit code.
func ExactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		return Usage(cobra.ExactArgs(n)(cmd, args))
	}
}

// NoArgs is cobra.NoArgs with a usage exit code.
func NoArgs(cmd *cobra.Command, args []string) error {
	return Usage(cobra.NoArgs(cmd, args))
}

// VersionCmd is the `version` command of the binary called name.
func VersionCmd(name string) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, commit, build date and Go version",
		Example: "  " + name + " version",
		Args:    NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", name, version.Get())
			return nil
		},
	}
}

// DrainContext is the context of a graceful stop that began with a signal:
// it ends after timeout, or at once when another SIGINT or SIGTERM arrives,
// which is logged as msg. Cancel it when the drain is over.
func DrainContext(timeout time.Duration, log *slog.Logger, msg string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	go func() {
		defer signal.Stop(again)
		select {
		case <-again:
			log.Warn(msg)
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
