//go:build unix && !linux

package sandboxes

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr puts the agent in a session (and process group) of its own, so Stop
// and Close kill it whole. What this lacks against Linux: there is no parent-death signal on darwin or
// the BSDs, so an agent outlives a flare up that is killed by SIGKILL (a normal exit,
// Ctrl-C or SIGTERM still stops every agent through Close).
func sysProcAttr(bool) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setsid: true}
}

// subreaperArgs is empty: there is no child subreaper here (sweepSession is all).
func subreaperArgs() []string { return nil }

// Supervise is Linux's only: Procs never passes SubreaperFlag elsewhere.
func Supervise() int {
	fmt.Fprintln(os.Stderr, "flare agent: "+SubreaperFlag+" needs Linux")
	return 2
}
