package sandboxes

import "syscall"

// sysProcAttr starts the agent in a session of its own (so also its own process
// group, killed whole) and kills it when flare up dies, even by kill -9 (Pdeathsig is
// Linux's prctl PR_SET_PDEATHSIG). Its commands get process groups of their own but
// stay in its session, which is how sweepSession finds what outlives the agent.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}
