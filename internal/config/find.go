package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// etcDir is the system-wide config directory, the last place searched.
const etcDir = "/etc"

// FindAgent returns the path of the agent config: explicit if non-empty,
// else the first tunnel-agent.toml found in the places Find searches.
func FindAgent(explicit string) (string, error) {
	return Find(explicit, AgentFile, os.Getenv, os.Executable)
}

// FindServer returns the path of the server config: explicit if
// non-empty, else the first tunnel-server.toml found in the places Find
// searches.
func FindServer(explicit string) (string, error) {
	return Find(explicit, ServerFile, os.Getenv, os.Executable)
}

// Find returns the path of the config file called name. An explicit path
// (from --config) is returned if it exists, and is an error otherwise.
// Without one, the first existing of these is returned:
//
//  1. <directory of the executable>/NAME
//  2. $XDG_CONFIG_HOME/NAME, or ~/.config/NAME when XDG_CONFIG_HOME is
//     unset or not absolute
//  3. /etc/NAME
//
// When none exists, the error (ErrNotFound) lists every place searched and
// says to pass --config. env looks up environment variables and
// executable returns the running binary's path; they are os.Getenv and
// os.Executable outside tests.
func Find(explicit, name string, env func(string) string, executable func() (string, error)) (string, error) {
	return find(explicit, name, env, executable, etcDir)
}

func find(explicit, name string, env func(string) string, executable func() (string, error), etc string) (string, error) {
	if explicit != "" {
		if err := isFile(explicit); err != nil {
			return "", fmt.Errorf("config file %s: %w", explicit, err)
		}
		return explicit, nil
	}
	if env == nil {
		env = func(string) string { return "" }
	}
	var searched []string
	for _, dir := range searchDirs(env, executable, etc) {
		path := filepath.Join(dir, name)
		err := isFile(path)
		if err == nil {
			return path, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			searched = append(searched, path)
		} else {
			searched = append(searched, fmt.Sprintf("%s (%v)", path, err))
		}
	}
	return "", fmt.Errorf("%w: no %s in any of:\n  %s\npass --config FILE to use another file",
		ErrNotFound, name, strings.Join(searched, "\n  "))
}

// searchDirs returns the directories Find searches, in order.
func searchDirs(env func(string) string, executable func() (string, error), etc string) []string {
	var dirs []string
	if executable != nil {
		if exe, err := executable(); err == nil && exe != "" {
			dirs = append(dirs, filepath.Dir(exe))
		}
	}
	// The XDG base directory spec says to ignore a relative XDG_CONFIG_HOME.
	if xdg := env("XDG_CONFIG_HOME"); filepath.IsAbs(xdg) {
		dirs = append(dirs, xdg)
	} else if home := env("HOME"); home != "" {
		dirs = append(dirs, filepath.Join(home, ".config"))
	}
	return append(dirs, etc)
}

// isFile returns nil if path exists and is not a directory.
func isFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err // the caller names the path
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	return nil
}
