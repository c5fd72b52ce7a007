package mariadbtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// template is a data directory made by mariadb-install-db and held in
// memory (about 25 MB), so that each Start writes a copy instead of running
// the installer again: the installer takes a second on an idle 2-core
// machine and several when tests start servers in parallel, writing a copy
// a few tens of milliseconds. It holds the test database and user, so every
// server of one test binary has the same password. Copying the files of a
// cleanly stopped server is a valid cold copy; MariaDB keeps no instance
// identity in them.
type template struct {
	once     sync.Once
	password string
	files    []templateFile
	err      error
}

type templateFile struct {
	rel  string      // path relative to the data directory
	mode fs.FileMode // fs.ModeDir for directories
	data []byte
}

// templates are made once per test binary, one per installer (there is one
// in practice). They live until the process ends; the files on disk are
// removed as soon as they are read.
var (
	templatesMu sync.Mutex
	templates   = map[string]*template{}
)

// templateFor returns the template of installDB, making it on first use.
func templateFor(installDB string) (*template, error) {
	templatesMu.Lock()
	tp, ok := templates[installDB]
	if !ok {
		tp = &template{}
		templates[installDB] = tp
	}
	templatesMu.Unlock()
	tp.once.Do(func() { tp.err = tp.make(installDB) })
	return tp, tp.err
}

// make runs mariadb-install-db in a temporary directory, reads the result
// and removes the directory.
func (tp *template) make(installDB string) error {
	dir, err := os.MkdirTemp("", "mariadbtest-template-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tp.password = rand.Text()
	dataDir := filepath.Join(dir, "data")
	if err := runInstallDB(installDB, dir, dataDir, tp.password); err != nil {
		return err
	}
	return filepath.WalkDir(dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dataDir {
			return err
		}
		rel, err := filepath.Rel(dataDir, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		f := templateFile{rel: rel, mode: fi.Mode() & (fs.ModeDir | fs.ModePerm)}
		switch {
		case fi.IsDir():
		case fi.Mode().IsRegular():
			if f.data, err = os.ReadFile(path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("mariadb-install-db made %s, neither a file nor a directory", path)
		}
		tp.files = append(tp.files, f)
		return nil
	})
}

// writeTo creates dataDir, which must not exist, as a copy of the template.
// WalkDir listed every directory before its contents.
func (tp *template) writeTo(dataDir string) error {
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return err
	}
	for _, f := range tp.files {
		path := filepath.Join(dataDir, f.rel)
		var err error
		if f.mode.IsDir() {
			err = os.Mkdir(path, f.mode.Perm())
		} else {
			err = os.WriteFile(path, f.data, f.mode.Perm())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// runInstallDB creates the data directory dataDir with the test database
// and the test user. The SQL goes through mariadb-install-db's
// --extra-file, which runs it in the bootstrap server, so no client and no
// second start are needed. The bootstrap server has not loaded the grant
// tables, which CREATE USER needs; FLUSH PRIVILEGES loads them.
func runInstallDB(installDB, dir, dataDir, password string) error {
	setup := filepath.Join(dir, "setup.sql")
	sql := fmt.Sprintf("FLUSH PRIVILEGES;\nCREATE DATABASE %s;\nCREATE USER '%s'@'%%' IDENTIFIED BY '%s';\nGRANT ALL PRIVILEGES ON *.* TO '%s'@'%%';\n",
		testDatabase, testUser, password, testUser)
	if err := os.WriteFile(setup, []byte(sql), 0o600); err != nil {
		return err
	}
	defer os.Remove(setup)

	ctx, cancel := context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	args := []string{
		"--no-defaults", // must come first; /etc/mysql is for the system server
		"--datadir=" + dataDir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--extra-file=" + setup,
		// No --user: as root, mariadb-install-db would then chown Debian's
		// auth_pam_tool_dir to that user, changing the system install. The
		// bootstrap server runs as whoever we are, root included.
	}
	args = append(args, settings...)
	cmd := exec.CommandContext(ctx, installDB, args...)
	cmd.Dir = dir
	cmd.Env = environ()
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = dieWithParent(syscall.SIGKILL)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mariadb-install-db %s: %v\n%s", dataDir, err, out)
	}
	return nil
}
