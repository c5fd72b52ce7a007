package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// account is the OS user the server processes run as. PostgreSQL refuses to
// start as root, so when the tests run as root (containers, CI) initdb and
// postgres are started with the credentials of an unprivileged account; the
// zero value means "as ourselves".
type account struct {
	name     string
	uid, gid uint32
	switched bool
}

// serverAccount picks the account: ourselves unless we are root, else the
// user named by TUNNEL_PG_OSUSER, default "postgres" (created by Debian's
// postgresql packages).
func serverAccount() (account, error) {
	if os.Geteuid() != 0 {
		return account{}, nil
	}
	name := os.Getenv(EnvOSUser)
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return account{}, fmt.Errorf("running as root, which PostgreSQL refuses; the unprivileged OS user %q to run it as does not exist (install the postgresql package, create the user, or name another with %s): %v",
			name, EnvOSUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return account{}, fmt.Errorf("running as root, which PostgreSQL refuses; OS user %q has uid %q gid %q, need a non-root numeric account (set %s)",
			name, u.Uid, u.Gid, EnvOSUser)
	}
	return account{name: name, uid: uint32(uid), gid: uint32(gid), switched: true}, nil
}

// apply makes cmd run as the account. Credential is set in the child between
// fork and exec (setgroups, setgid, setuid), so no runuser/su/PAM is needed
// and the server stays our direct child, which we can signal and wait for.
func (a account) apply(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	if a.switched {
		setCredential(cmd.SysProcAttr, a.uid, a.gid)
	}
}

// maxSocketDir keeps "<dir>/sock/.s.PGSQL.65535" well inside the 107 bytes a
// unix socket path may have.
const maxSocketDir = 80

// tempDir returns an empty directory the server account owns, removed when
// the test ends. t.TempDir is used when it will do; it will not when the
// server runs as another user (t.TempDir's parent is mode 0700 and owned by
// us) or when its path is too long for the unix socket inside it. Then a
// directory is made by newTempDir.
func tempDir(t testing.TB, acct account) string {
	t.Helper()
	if !acct.switched {
		if dir := t.TempDir(); len(dir) <= maxSocketDir {
			return dir
		}
	}
	dir, err := newTempDir(acct)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("pgtest: remove %s: %v", dir, err)
		}
	})
	return dir
}

// newTempDir makes an empty directory directly under os.TempDir (or /tmp)
// and gives it to the server account; the ancestors must be searchable by
// that account. The caller removes it.
func newTempDir(acct account) (string, error) {
	var lastErr error
	for _, base := range []string{os.TempDir(), "/tmp"} {
		if acct.switched && !searchableByOthers(base) {
			lastErr = fmt.Errorf("%s is not searchable by OS user %q", base, acct.name)
			continue
		}
		dir, err := os.MkdirTemp(base, "pgtest-")
		if err != nil {
			lastErr = err
			continue
		}
		if acct.switched {
			if err := os.Chown(dir, int(acct.uid), int(acct.gid)); err != nil {
				os.RemoveAll(dir)
				return "", fmt.Errorf("give %s to OS user %q: %v", dir, acct.name, err)
			}
		}
		return dir, nil
	}
	return "", fmt.Errorf("no usable temporary directory: %v", lastErr)
}

// searchableByOthers reports whether every directory from dir up to / has
// the "other" execute bit, so an unrelated user can reach files below it.
func searchableByOthers(dir string) bool {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	for {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
}
