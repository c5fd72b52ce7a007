package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// testRoot is a small command tree with the global flags, as the binaries
// build theirs.
func testRoot() *cobra.Command {
	root := &cobra.Command{Use: "tool", Example: "  tool run"}
	(&Globals{}).Register(root, "tool.toml")
	run := &cobra.Command{Use: "run", Example: "  tool run", RunE: func(*cobra.Command, []string) error { return nil }}
	noExample := &cobra.Command{Use: "bare", RunE: func(*cobra.Command, []string) error { return nil }}
	hidden := &cobra.Command{Use: "secret", Hidden: true, RunE: func(*cobra.Command, []string) error { return nil }}
	root.AddCommand(run, noExample, hidden, VersionCmd("tool"))
	return root
}

// TestMissingExamples: every visible command without an example is named,
// hidden ones are not, and the completion and help commands cobra adds
// have examples.
func TestMissingExamples(t *testing.T) {
	root := testRoot()
	AddDefaultCommands(root)
	for _, path := range []string{"completion", "completion bash", "completion zsh", "completion fish", "completion powershell", "help"} {
		c, _, err := root.Find(strings.Fields(path))
		if err != nil || c == root || c.Hidden {
			t.Errorf("%q: not a visible command (%v)", path, err)
		}
	}
	got := MissingExamples(root)
	if want := []string{"tool bare"}; !slices.Equal(got, want) {
		t.Errorf("MissingExamples = %q, want %q", got, want)
	}
}

// TestCompletionScript: `completion bash` writes a bash script for the
// tool to the command's output, and its help says how to install it.
func TestCompletionScript(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		t.Run(shell, func(t *testing.T) {
			root := testRoot()
			var out, errOut bytes.Buffer
			root.SetOut(&out)
			if code := Run(context.Background(), root, []string{"completion", shell}, &errOut); code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if !strings.Contains(out.String(), "tool") || out.Len() < 1000 {
				t.Errorf("no %s script for tool:\n%s", shell, out.String())
			}

			root = testRoot()
			out.Reset()
			root.SetOut(&out)
			if code := Run(context.Background(), root, []string{"completion", shell, "--help"}, &errOut); code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			if want := "tool completion " + shell; !strings.Contains(out.String(), "Examples:\n  ") || !strings.Contains(out.String(), want) {
				t.Errorf("help lacks an example with %q:\n%s", want, out.String())
			}
		})
	}
}

// TestCompleteLogLevels: --log completes to the levels, also after a
// module name.
func TestCompleteLogLevels(t *testing.T) {
	tests := []struct {
		name, arg, want string
	}{
		{"level", "", "debug\tdetails for finding a problem"},
		{"module", "info,mux=", "info,mux=trace\tthe most detail"},
		{"second", "warn,", "warn,error\tonly failures"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := testRoot()
			var out, errOut bytes.Buffer
			root.SetOut(&out)
			if code := Run(context.Background(), root, []string{cobra.ShellCompRequestCmd, "run", "--log", tt.arg}, &errOut); code != ExitOK {
				t.Fatalf("exit %d: %s", code, errOut.String())
			}
			lines := strings.Split(out.String(), "\n")
			if !slices.Contains(lines, tt.want) {
				t.Errorf("completions of --log %q lack %q:\n%s", tt.arg, tt.want, out.String())
			}
			if !slices.Contains(lines, ":4") { // ShellCompDirectiveNoFileComp
				t.Errorf("completions of --log %q offer files:\n%s", tt.arg, out.String())
			}
		})
	}
}
