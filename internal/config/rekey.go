package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	"github.com/pelletier/go-toml/v2/unstable"
)

// ErrKeyNotInFile means an agent config file does not set [agent] key as a
// string, so a new key cannot be written into it.
var ErrKeyNotInFile = errors.New("the file does not set [agent] key")

// ReplaceAgentKey returns data, the text of an agent config file, with the
// value of its [agent] key replaced by keyPEM (as a multi-line string) and
// every other byte, comments and targets included, unchanged. name is the
// file's name, for messages. As a check, the result must load (without the
// environment) to the same config as data with only the key changed.
func ReplaceAgentKey(name string, data []byte, keyPEM string) ([]byte, error) {
	if reason := checkPrivateKeyPEM(keyPEM); reason != "" {
		return nil, fmt.Errorf("%s: new agent key: %s", name, reason)
	}
	start, end, err := agentKeySpan(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	before, err := ParseAgent(name, data, nil)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(data)-(end-start)+len(keyPEM)+8)
	out = append(out, data[:start]...)
	out = append(out, tomlMultiline(keyPEM)...)
	out = append(out, data[end:]...)

	after, err := ParseAgent(name, out, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: with the new key the file does not load: %w", name, err)
	}
	want := *before
	want.Agent.Key = Secret(keyPEM)
	if after.Agent.Key.Reveal() != keyPEM || !reflect.DeepEqual(*after, want) {
		return nil, fmt.Errorf("%s: replacing the key would change more than the key", name)
	}
	return out, nil
}

// agentKeySpan returns where the value of [agent] key is in data: in an
// [agent] table, or as the dotted key agent.key at the top level.
func agentKeySpan(data []byte) (start, end int, err error) {
	// Offsets come from capacities (see unstable.Parser.Range); clip.
	data = data[:len(data):len(data)]
	var p unstable.Parser
	p.Reset(data)
	var table []string
	found := -1
	for p.NextExpression() {
		n := p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyNames(n.Key())
			if n.Kind == unstable.ArrayTable {
				table = append(table, "[]")
			}
		case unstable.KeyValue:
			path := append(append([]string(nil), table...), keyNames(n.Key())...)
			if len(path) != 2 || path[0] != "agent" || path[1] != "key" {
				continue
			}
			v := n.Value()
			if v.Kind != unstable.String {
				return 0, 0, fmt.Errorf("%w as a string", ErrKeyNotInFile)
			}
			if found >= 0 {
				return 0, 0, errors.New("the file sets [agent] key twice")
			}
			found = int(v.Raw.Offset)
			end = found + int(v.Raw.Length)
		}
	}
	if err := p.Error(); err != nil {
		return 0, 0, fmt.Errorf("invalid TOML: %w", err)
	}
	if found < 0 {
		return 0, 0, ErrKeyNotInFile
	}
	return found, end, nil
}

func keyNames(it unstable.Iterator) []string {
	var names []string
	for it.Next() {
		names = append(names, string(it.Node().Data))
	}
	return names
}

// RewriteAgentKey replaces the key in the agent config file at path (see
// ReplaceAgentKey) atomically: the new text goes to a temporary file in the
// same directory, mode 0600 and (where the platform has them) the old
// file's owner and group, which is synced and renamed over path. The file
// holds the old key or the new one, whole, whatever happens; the directory
// must be writable.
func RewriteAgentKey(path, keyPEM string) error {
	data, abs, err := readFile(path)
	if err != nil {
		return err
	}
	out, err := ReplaceAgentKey(abs, data, keyPEM)
	if err != nil {
		return err
	}
	if target, err := filepath.EvalSymlinks(abs); err == nil {
		abs = target // replace the file, not the link to it
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".new-*")
	if err != nil {
		return fmt.Errorf("rewrite %s: %w (the agent needs to write in the config file's directory to rotate its key)", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	if err := sameOwner(tmp, fi); err != nil {
		return fmt.Errorf("rewrite %s: keep the file's owner: %w", path, err)
	}
	if _, err := tmp.Write(out); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), abs); err != nil {
		return fmt.Errorf("rewrite %s: %w", path, err)
	}
	done = true
	// The rename is durable once the directory is synced.
	if d, err := os.Open(filepath.Dir(abs)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// CheckKeyRewritable reports whether RewriteAgentKey could replace the key
// in the file at path: the file sets [agent] key as a string and the
// agent may create files in its directory. An agent checks this before it
// announces a new key, so that a rotation does not stop half way.
func CheckKeyRewritable(path string) error {
	data, abs, err := readFile(path)
	if err != nil {
		return err
	}
	if _, _, err := agentKeySpan(data); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if target, err := filepath.EvalSymlinks(abs); err == nil {
		abs = target
	}
	tmp, err := os.CreateTemp(filepath.Dir(abs), "."+filepath.Base(abs)+".check-*")
	if err != nil {
		return fmt.Errorf("%s: cannot write in its directory, so a new key could not be stored: %w", path, err)
	}
	tmp.Close()
	os.Remove(tmp.Name())
	return nil
}
