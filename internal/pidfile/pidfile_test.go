package pidfile

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestWriteFindRemove(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("RUNTIME_DIRECTORY", dir)
	path, err := Write("", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "tunnel-agent-acme.pid"); path != want {
		t.Fatalf("wrote %s, want %s", path, want)
	}
	pid, file, err := Find("", "acme")
	if err != nil || pid != os.Getpid() || file != path {
		t.Fatalf("Find: %d %s %v, want %d %s", pid, file, err, os.Getpid(), path)
	}
	if _, _, err := Find("", "other"); err == nil {
		t.Error("found a pid file for an agent that has none")
	}
	Remove(path)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Remove left %s: %v", path, err)
	}
}

// Remove leaves a file that another process has taken over.
func TestRemoveKeepsOthers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pid")
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid()+1)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Remove(path)
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Remove deleted another process's pid file: %v", err)
	}
}

func TestNeverTheTempDir(t *testing.T) {
	for _, d := range Dirs() {
		if d == os.TempDir() {
			t.Errorf("the world-writable %s is searched for pid files", d)
		}
	}
}

func TestFindBadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pid")
	os.WriteFile(path, []byte("nonsense"), 0o644)
	if _, _, err := Find(path, ""); err == nil {
		t.Error("a pid file without a number was accepted")
	}
}
