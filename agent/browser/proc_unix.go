//go:build unix

package browser

import (
	"os/exec"
	"syscall"
)

// setProcAttr gives chromium a process group of its own (it forks renderers and a
// zygote, all killed together).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeath(cmd.SysProcAttr)
}

func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }
