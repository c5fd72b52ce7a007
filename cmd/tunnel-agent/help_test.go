package main

import (
	"testing"

	"github.com/tunnelrelay/tunnel/internal/cli"
)

// TestEveryCommandHasAnExample: `--help` of every command, including
// cobra's completion and help commands, shows an example.
func TestEveryCommandHasAnExample(t *testing.T) {
	root := newRootCmd()
	cli.AddDefaultCommands(root) // as cli.Run does
	if missing := cli.MissingExamples(root); len(missing) > 0 {
		t.Errorf("commands without an Example: %q", missing)
	}
}
