//go:build unix

package config

import (
	"io/fs"
	"os"
	"syscall"
)

// sameOwner gives f the owner and group of the file fi describes, when run
// as root and they differ: a key rotated by root (`tunnel-agent rotate`)
// for an agent that runs as its own user must stay readable by that user.
// Anyone else cannot give a file away; the new file is then theirs, and
// readable by them.
func sameOwner(f *os.File, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || os.Geteuid() != 0 {
		return nil
	}
	cur, err := f.Stat()
	if err != nil {
		return err
	}
	if c, ok := cur.Sys().(*syscall.Stat_t); ok && c.Uid == st.Uid && c.Gid == st.Gid {
		return nil
	}
	return f.Chown(int(st.Uid), int(st.Gid))
}
