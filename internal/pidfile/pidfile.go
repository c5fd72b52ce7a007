// Package pidfile records the process id of a running tunnel-agent so that
// `tunnel-agent reload` can find it and send it SIGHUP.
//
// The default file is named after the agent, in the first usable runtime
// directory: $RUNTIME_DIRECTORY (set by systemd's RuntimeDirectory=), then
// /run/tunnel-agent (made when missing, which takes root), then
// $XDG_RUNTIME_DIR. Never a world-writable directory such as /tmp, where
// another user could plant a pid file for reload to signal.
package pidfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Dirs returns the runtime directories searched, in order.
func Dirs() []string {
	var dirs []string
	for _, d := range []string{os.Getenv("RUNTIME_DIRECTORY"), systemRunDir, os.Getenv("XDG_RUNTIME_DIR")} {
		// systemd may list several directories, separated by colons.
		if first, _, _ := strings.Cut(d, ":"); first != "" {
			dirs = append(dirs, first)
		}
	}
	return dirs
}

// systemRunDir is the system-wide runtime directory of tunnel-agent.
const systemRunDir = "/run/tunnel-agent"

// FileName is the pid file's name for the agent called name.
func FileName(name string) string { return "tunnel-agent-" + name + ".pid" }

// Write records this process's id in path, or, when path is empty, in the
// first runtime directory that accepts it. It returns the file written.
func Write(path, name string) (string, error) {
	data := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if path != "" {
		return path, writeFile(path, data)
	}
	var errs []error
	for _, dir := range Dirs() {
		if dir == systemRunDir {
			os.MkdirAll(dir, 0o755) // fails unless root; then writeFile says why
		}
		p := filepath.Join(dir, FileName(name))
		err := writeFile(p, data)
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("no runtime directory accepts the pid file: %w", errors.Join(errs...))
}

func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// Find returns the pid recorded in path, or, when path is empty, in the
// agent's file in the first runtime directory that has one.
func Find(path, name string) (pid int, file string, err error) {
	candidates := []string{path}
	if path == "" {
		candidates = nil
		for _, dir := range Dirs() {
			candidates = append(candidates, filepath.Join(dir, FileName(name)))
		}
	}
	for _, p := range candidates {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) && path == "" {
			continue
		}
		if err != nil {
			return 0, p, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			return 0, p, fmt.Errorf("%s: not a process id", p)
		}
		return pid, p, nil
	}
	return 0, "", fmt.Errorf("no pid file for agent %q in %s (is `tunnel-agent run` running with this config?)",
		name, strings.Join(candidates, ", "))
}

// Remove deletes path if it still holds this process's id.
func Remove(path string) {
	data, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(data)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}
