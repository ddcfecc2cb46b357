package sandboxes

import "syscall"

// sysProcAttr starts the agent (or its supervisor) in a session of its own (so also
// its own process group, killed whole) and signals it when flare up dies, even by
// kill -9 (Pdeathsig is Linux's prctl PR_SET_PDEATHSIG): SIGKILL for an agent or bwrap,
// SIGTERM for a supervisor, which then kills the agent and everything under it. Its
// commands get process groups of their own but stay in its session, which is how
// sweepSession finds what outlives an agent that has no supervisor.
func sysProcAttr(supervised bool) *syscall.SysProcAttr {
	if supervised {
		return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}
	}
	return &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
}
