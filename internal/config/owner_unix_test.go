//go:build unix

package config

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func checkOwner(t *testing.T, path string, uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, uid, gid)
	}
}

// TestRewriteAgentKeyKeepsOwner: root rewriting another user's config
// gives the new file that user.
func TestRewriteAgentKeyKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root can give a file away")
	}
	path := filepath.Join(t.TempDir(), AgentFile)
	if err := os.WriteFile(path, []byte(validAgent), 0o600); err != nil {
		t.Fatal(err)
	}
	const uid, gid = 4242, 4343
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := RewriteAgentKey(path, newKeyPEM(t)); err != nil {
		t.Fatal(err)
	}
	checkOwner(t, path, uid, gid)
}
