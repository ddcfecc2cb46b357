//go:build unix && !linux

package sandboxes

import "syscall"

// sysProcAttr puts the agent in a session (and process group) of its own, so Stop
// and Close kill it whole. What this lacks against Linux: there is no parent-death signal on darwin or
// the BSDs, so an agent outlives a flare up that is killed by SIGKILL (a normal exit,
// Ctrl-C or SIGTERM still stops every agent through Close).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}
