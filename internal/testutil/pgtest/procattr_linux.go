package pgtest

import "syscall"

// dieWithParent returns process attributes under which the child gets sig
// when the test binary dies.
func dieWithParent(sig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: sig}
}

// setCredential makes the child run as uid and gid.
func setCredential(attr *syscall.SysProcAttr, uid, gid uint32) {
	attr.Credential = &syscall.Credential{Uid: uid, Gid: gid}
}
