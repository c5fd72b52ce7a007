package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// AddDefaultCommands adds cobra's own `help` and `completion` commands to
// root, visible and with examples, as cobra would add them at Execute
// without examples. Run calls it, so a test that calls it sees the tree
// the binary has.
//
// cobra's completion commands write to the output root has when they are
// added: call this after root.SetOut, as Run does.
func AddDefaultCommands(root *cobra.Command) {
	name := root.Name()
	root.InitDefaultHelpCmd()
	root.CompletionOptions.DisableDefaultCmd = false
	root.CompletionOptions.HiddenDefaultCmd = false
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		switch c.Name() {
		case "help":
			if c.Example == "" {
				c.Example = "  " + name + " help\n  " + name + " help " + firstCommand(root)
			}
		case "completion":
			setCompletionExamples(c, name)
		}
	}
}

// firstCommand names one of root's own commands for the help example.
func firstCommand(root *cobra.Command) string {
	for _, c := range root.Commands() {
		if c.IsAvailableCommand() && c.Name() != "help" && c.Name() != "completion" {
			return c.Name()
		}
	}
	return "completion"
}

// setCompletionExamples gives `completion` and its per-shell commands the
// commands that install the script, as cobra's help text describes.
func setCompletionExamples(completion *cobra.Command, name string) {
	shells := []struct{ shell, session, always string }{
		{"bash", "source <(NAME completion bash)", "NAME completion bash > /etc/bash_completion.d/NAME"},
		{"zsh", "source <(NAME completion zsh)", `NAME completion zsh > "${fpath[1]}/_NAME"`},
		{"fish", "NAME completion fish | source", "NAME completion fish > ~/.config/fish/completions/NAME.fish"},
		{"powershell", "NAME completion powershell | Out-String | Invoke-Expression", "NAME completion powershell >> $PROFILE"},
	}
	var all []string
	for _, s := range shells {
		session := strings.ReplaceAll(s.session, "NAME", name)
		always := strings.ReplaceAll(s.always, "NAME", name)
		all = append(all, "  "+always)
		for _, c := range completion.Commands() {
			if c.Name() == s.shell && c.Example == "" {
				c.Example = "  " + session + "   # this shell only\n  " + always + "   # every new shell"
			}
		}
	}
	if completion.Example == "" {
		completion.Example = strings.Join(all, "\n")
	}
}

// MissingExamples returns the path of every visible command under root,
// root included, whose help shows no example.
func MissingExamples(root *cobra.Command) []string {
	var missing []string
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		if strings.TrimSpace(c.Example) == "" {
			missing = append(missing, c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return missing
}

// logLevels are the levels --log takes.
var logLevels = []cobra.Completion{
	cobra.CompletionWithDesc("trace", "the most detail"),
	cobra.CompletionWithDesc("debug", "details for finding a problem"),
	cobra.CompletionWithDesc("info", "the default"),
	cobra.CompletionWithDesc("warn", "only what may need attention"),
	cobra.CompletionWithDesc("error", "only failures"),
}

// completeLogLevels completes --log: a level, or a module's level after
// "name=" in a list such as info,mux=debug.
func completeLogLevels(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	prefix := toComplete[:strings.LastIndexAny(toComplete, ",=")+1]
	out := make([]cobra.Completion, len(logLevels))
	for i, l := range logLevels {
		out[i] = prefix + l
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}
