//go:build !linux

package pgtest

import "syscall"

// dieWithParent returns empty attributes: only Linux has a parent-death
// signal, so elsewhere a server can outlive a test binary that dies.
func dieWithParent(syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}

// setCredential does nothing: switching accounts, for tests run as root,
// is done on Linux only. PostgreSQL started as root refuses to run and says
// so.
func setCredential(*syscall.SysProcAttr, uint32, uint32) {}
