package sandboxes

import "syscall"

// sysProcAttr puts the agent in its own process group (killed whole) and kills it
// when flare up dies, even by kill -9.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
