package mariadbtest

import "syscall"

// dieWithParent returns process attributes under which the child gets sig
// when the test binary dies.
func dieWithParent(sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: sig}
}
