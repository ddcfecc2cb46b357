//go:build unix

package sandbox

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes the command the leader of a new process group, so it and
// everything it starts can be signalled at once.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup signals every process in the group.
func killGroup(pgid int, sig syscall.Signal) error {
	return syscall.Kill(-pgid, sig)
}
