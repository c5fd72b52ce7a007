package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	t.Parallel()
	// Every place Find looks, as temp dirs; "etc" stands in for /etc.
	type places struct{ exe, xdg, home, etc string }
	newPlaces := func(t *testing.T) places {
		root := t.TempDir()
		p := places{
			exe:  filepath.Join(root, "opt", "bin"),
			xdg:  filepath.Join(root, "xdg"),
			home: filepath.Join(root, "home"),
			etc:  filepath.Join(root, "etc"),
		}
		for _, d := range []string{p.exe, p.xdg, filepath.Join(p.home, ".config"), p.etc} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	touch := func(t *testing.T, path string) {
		t.Helper()
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name     string
		files    func(p places) []string // files to create
		dirs     func(p places) []string // directories to create
		explicit func(p places) string
		env      func(p places) map[string]string
		exeErr   bool
		want     func(p places) string // the path found; empty means an error
		wantErr  []string              // each must be in the error
	}{
		{
			name: "explicit path that exists",
			files: func(p places) []string {
				return []string{filepath.Join(p.etc, "custom.toml"), filepath.Join(p.exe, AgentFile)}
			},
			explicit: func(p places) string { return filepath.Join(p.etc, "custom.toml") },
			want:     func(p places) string { return filepath.Join(p.etc, "custom.toml") },
		},
		{
			name:     "explicit path that does not exist is an error, with no search",
			files:    func(p places) []string { return []string{filepath.Join(p.exe, AgentFile)} },
			explicit: func(p places) string { return filepath.Join(p.etc, "missing.toml") },
			wantErr:  []string{"config file ", "missing.toml: no such file or directory"},
		},
		{
			name:     "explicit path that is a directory",
			explicit: func(p places) string { return p.etc },
			wantErr:  []string{"is a directory"},
		},
		{
			name: "next to the executable first",
			files: func(p places) []string {
				return []string{filepath.Join(p.exe, AgentFile), filepath.Join(p.xdg, AgentFile), filepath.Join(p.etc, AgentFile)}
			},
			want: func(p places) string { return filepath.Join(p.exe, AgentFile) },
		},
		{
			name: "then XDG_CONFIG_HOME",
			files: func(p places) []string {
				return []string{filepath.Join(p.xdg, AgentFile), filepath.Join(p.etc, AgentFile)}
			},
			want: func(p places) string { return filepath.Join(p.xdg, AgentFile) },
		},
		{
			name: "then ~/.config when XDG_CONFIG_HOME is unset",
			files: func(p places) []string {
				return []string{filepath.Join(p.home, ".config", AgentFile), filepath.Join(p.etc, AgentFile)}
			},
			env:  func(p places) map[string]string { return map[string]string{"HOME": p.home} },
			want: func(p places) string { return filepath.Join(p.home, ".config", AgentFile) },
		},
		{
			name:  "a relative XDG_CONFIG_HOME is ignored",
			files: func(p places) []string { return []string{filepath.Join(p.home, ".config", AgentFile)} },
			env:   func(p places) map[string]string { return map[string]string{"HOME": p.home, "XDG_CONFIG_HOME": "rel"} },
			want:  func(p places) string { return filepath.Join(p.home, ".config", AgentFile) },
		},
		{
			name:  "then /etc",
			files: func(p places) []string { return []string{filepath.Join(p.etc, AgentFile)} },
			want:  func(p places) string { return filepath.Join(p.etc, AgentFile) },
		},
		{
			name:   "an executable that cannot be found is skipped",
			files:  func(p places) []string { return []string{filepath.Join(p.etc, AgentFile)} },
			exeErr: true,
			want:   func(p places) string { return filepath.Join(p.etc, AgentFile) },
		},
		{
			name:  "a directory with the file's name is not the file",
			files: func(p places) []string { return []string{filepath.Join(p.etc, AgentFile)} },
			dirs:  func(p places) []string { return []string{filepath.Join(p.exe, AgentFile)} },
			want:  func(p places) string { return filepath.Join(p.etc, AgentFile) },
		},
		{
			name:    "none found lists every place and says to pass --config",
			wantErr: []string{"no tunnel-agent.toml in any of:", "opt/bin/tunnel-agent.toml\n", "xdg/tunnel-agent.toml\n", "etc/tunnel-agent.toml\n", "pass --config FILE"},
		},
		{
			name:    "none found without XDG lists ~/.config",
			env:     func(p places) map[string]string { return map[string]string{"HOME": p.home} },
			wantErr: []string{"home/.config/tunnel-agent.toml\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newPlaces(t)
			if tt.files != nil {
				for _, f := range tt.files(p) {
					touch(t, f)
				}
			}
			if tt.dirs != nil {
				for _, d := range tt.dirs(p) {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			env := map[string]string{"XDG_CONFIG_HOME": p.xdg, "HOME": p.home}
			if tt.env != nil {
				env = tt.env(p)
			}
			explicit := ""
			if tt.explicit != nil {
				explicit = tt.explicit(p)
			}
			exe := func() (string, error) { return filepath.Join(p.exe, "tunnel-agent"), nil }
			if tt.exeErr {
				exe = func() (string, error) { return "", errors.New("no executable") }
			}
			got, err := find(explicit, AgentFile, envMap(env), exe, p.etc)
			if tt.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if want := tt.want(p); got != want {
					t.Errorf("got %s, want %s", got, want)
				}
				return
			}
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestFindErrors(t *testing.T) {
	t.Parallel()
	// The real search ends in /etc; a machine with an installed agent may
	// have the file there.
	got, err := Find("", AgentFile, envMap(nil), func() (string, error) { return "/nonexistent/bin/x", nil })
	switch {
	case err == nil && got != "/etc/tunnel-agent.toml":
		t.Errorf("found %s", got)
	case err != nil && !errors.Is(err, ErrNotFound):
		t.Errorf("not ErrNotFound: %v", err)
	case err != nil && !strings.Contains(err.Error(), "/etc/tunnel-agent.toml"):
		t.Errorf("/etc not searched: %v", err)
	}
	_, err = Find("/nonexistent/x.toml", AgentFile, nil, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("explicit missing file is not fs.ErrNotExist: %v", err)
	}
}
