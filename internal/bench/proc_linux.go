package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks Linux to stop the child should the benchmark die
// without stopping it (killed, say), so that no server or agent outlives a
// run.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
