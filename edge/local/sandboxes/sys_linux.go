package sandboxes

import "syscall"

// sysProcAttr puts the agent in its own process group (killed whole) and kills it
// when flare up dies, even by kill -9 (Pdeathsig is Linux's prctl PR_SET_PDEATHSIG).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
