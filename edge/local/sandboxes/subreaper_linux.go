package sandboxes

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

// prSetChildSubreaper is prctl's PR_SET_CHILD_SUBREAPER (linux/prctl.h); the syscall
// package has SYS_PRCTL but not the option, and this is not worth a direct x/sys.
const prSetChildSubreaper = 36

// subreaperArgs are what Procs puts between the agent command and its flags when the
// sandbox is not isolated.
func subreaperArgs() []string { return []string{SubreaperFlag} }

// Supervise is the process Procs starts for an unisolated sandbox: it becomes a child
// subreaper, so every process the agent starts that is orphaned, including one that
// made a session of its own (setsid, a daemon's double fork), is re-parented to it
// rather than to init; runs the agent (this binary, os.Args without SubreaperFlag) as
// its child; and once the agent has exited, however (its own end, SIGKILL, a crash),
// kills everything left under it before exiting with the agent's status. SIGTERM (how
// Procs stops a sandbox, and the parent-death signal when flare up dies) kills the
// agent. The agent is what the sandbox's processes hang from, so it cannot be the
// one to clean up after its own SIGKILL; a supervisor that runs no code of a run can.
func Supervise() int {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "flare agent: become a child subreaper:", e)
		return 3
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	args := slices.DeleteFunc(slices.Clone(os.Args), func(a string) bool { return a == SubreaperFlag })
	// This very binary, even if its file was replaced or removed since (an upgrade).
	agent, err := os.StartProcess("/proc/self/exe", args, &os.ProcAttr{
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		// If the supervisor itself is killed, the agent goes too rather than run on unwatched.
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "flare agent:", err)
		return 3
	}
	go func() {
		<-term
		_ = agent.Signal(syscall.SIGKILL) // by pidfd: never another process
	}()
	code := 3
	for {
		// The supervisor's only children are the agent and the orphans it adopts: reaping
		// any of them here (wait4 -1) takes nothing from anyone else.
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			break
		}
		if pid == agent.Pid {
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
			break
		}
	}
	killDescendants()
	return code
}

// killDescendants kills this process's children until it has none, bounded at 10 s. As
// a subreaper it has no descendant once it has no child: a killed child's own children
// are re-parented to it and are killed on the next round. Only children are killed, as
// a child's pid cannot be reused before this process reaps it.
func killDescendants() {
	self := os.Getpid()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range processes(func(ppid, _ int) bool { return ppid == self }) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.ECHILD) {
				return
			}
			if pid <= 0 || err != nil {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}
