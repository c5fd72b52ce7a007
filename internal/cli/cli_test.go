package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestRunExitCodes: usage errors, cobra's own included, exit with
// ExitUsage; a command's failure with ExitFailure.
func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"run"}, ExitOK},
		{[]string{"bogus"}, ExitUsage},
		{[]string{"run", "--bogus"}, ExitUsage},
		{[]string{"version", "extra"}, ExitUsage},
		{[]string{"fail"}, ExitFailure},
	} {
		root := testRoot()
		root.SetFlagErrorFunc(FlagErrors) // as the binaries do
		root.AddCommand(failCmd())
		var stderr bytes.Buffer
		if got := Run(context.Background(), root, tc.args, &stderr); got != tc.want {
			t.Errorf("%q: exit %d, want %d (%s)", tc.args, got, tc.want, strings.TrimSpace(stderr.String()))
		}
	}
}

// failCmd is a command that fails.
func failCmd() *cobra.Command {
	return &cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return errors.New("it failed") }}
}
