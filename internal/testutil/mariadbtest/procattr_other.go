//go:build !linux

package mariadbtest

import "syscall"

// dieWithParent returns empty attributes: only Linux has a parent-death
// signal, so elsewhere a server can outlive a test binary that dies.
func dieWithParent(syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{}
}
