package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tunnelrelay/tunnel/internal/agent"
	"github.com/tunnelrelay/tunnel/internal/cli"
	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/logging"
	"github.com/tunnelrelay/tunnel/pkg/auth"
)

func (a *app) rotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Make a new key for this agent, register it with the server and store it in the config",
		Long: `rotate makes a new key on this host, announces it to the server over a
connection authenticated with the current key (a check connection, which
leaves a running agent alone), and once the server has accepted it writes
it into the config file in place of the old one: a temporary file in the
same directory, mode 0600, renamed over the config; everything else in the
file stays as it was.

The server then accepts both keys until the agent connects with the new
one; from then on it refuses the old one. So reload the running agent
('systemctl reload tunnel-agent' or 'tunnel-agent reload'): it moves to a
new connection with the new key while the sessions on the old one finish.

'tunnel-server agent rotate NAME' does all of this from the server's side
for a connected agent.`,
		Example: `  tunnel-agent rotate
  tunnel-agent rotate --config /etc/tunnel-agent.toml && systemctl reload tunnel-agent`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, eng, err := a.load(logging.Discard())
			if err != nil {
				return err
			}
			keys := newFileKeys(cfg)
			if err := keys.Check(); err != nil {
				return err
			}
			key, err := auth.NewAgentKey()
			if err != nil {
				return err
			}
			if err := eng.AnnounceKey(cmd.Context(), key.Fingerprint()); err != nil {
				return fmt.Errorf("the server at %s did not take the new key; nothing changed: %w", cfg.Server.Address, err)
			}
			if _, err := keys.Store(key); err != nil {
				return fmt.Errorf("the server accepted the new key, but it could not be stored, so the current key stays in use (run rotate again): %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), `New key %s registered with the server and written to %s.
The server accepts the old key too until the agent connects with the new one.
Reload the running agent now so that it does:

  systemctl reload tunnel-agent     (or: tunnel-agent reload --config %s)
`, key.Fingerprint(), cfg.Path, cfg.Path)
			return nil
		},
	}
}

// fileKeys stores a rotated key in the agent's config file.
type fileKeys struct {
	path string
}

var _ agent.KeyStore = (*fileKeys)(nil)

func newFileKeys(cfg *config.Agent) *fileKeys { return &fileKeys{path: cfg.Path} }

// keyEnvVar is the environment variable that overrides agent.key.
func keyEnvVar() string {
	for _, v := range config.AgentEnv() {
		if v.Key == "agent.key" {
			return v.Name
		}
	}
	return ""
}

// Check implements agent.KeyStore.
func (k *fileKeys) Check() error {
	if v := keyEnvVar(); v != "" && os.Getenv(v) != "" {
		return fmt.Errorf("agent.key comes from %s, not from %s: a new key cannot be stored there; rotate it where %s is set", v, k.path, v)
	}
	if _, err := config.LoadAgent(k.path); err != nil {
		return fmt.Errorf("the config file does not load now: %w", err)
	}
	return config.CheckKeyRewritable(k.path)
}

// Store implements agent.KeyStore: it rewrites the key in the file, and
// builds the TLS configuration from the file as it is then.
func (k *fileKeys) Store(key *auth.AgentKey) (*tls.Config, error) {
	if err := config.RewriteAgentKey(k.path, string(key.PEM())); err != nil {
		return nil, err
	}
	cfg, err := config.LoadAgent(k.path)
	if err != nil {
		return nil, err
	}
	if cfg.Agent.Key.Reveal() != string(key.PEM()) {
		return nil, errors.New("the rewritten config file does not hold the new key")
	}
	return auth.ClientConfig(cfg.Agent.Name, key, []byte(cfg.Server.CA), cfg.Server.ServerName)
}

// keyInUse returns the fingerprint of the key eng connects with, or "".
func keyInUse(eng *agent.Agent) string {
	c := eng.TLSConfig()
	if c == nil || len(c.Certificates) == 0 || c.Certificates[0].Leaf == nil {
		return ""
	}
	fp, _ := auth.Fingerprint(c.Certificates[0].Leaf.PublicKey)
	return fp
}

// fileKeyFingerprint returns the fingerprint of the key cfg holds, or "".
func fileKeyFingerprint(cfg *config.Agent) string {
	k, err := auth.ParseAgentKey([]byte(cfg.Agent.Key.Reveal()))
	if err != nil {
		return ""
	}
	return k.Fingerprint()
}
