package browser

import "syscall"

// setParentDeath makes the kernel kill chromium when the agent dies.
func setParentDeath(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
