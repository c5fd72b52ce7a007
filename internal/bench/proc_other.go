//go:build !linux

package bench

import "os/exec"

// setDeathSignal does nothing where the OS has no parent-death signal; the
// process scenarios need Linux's /proc anyway.
func setDeathSignal(*exec.Cmd) {}
