// Package proctest finds processes by their command line in /proc (Linux), for the
// tests that prove what a sandbox leaves running once it is gone.
package proctest

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Live lists the live (not zombie) processes whose command line, its arguments joined
// by spaces, satisfies match.
func Live(match func(cmdline string) bool) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !match(strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))) {
			continue
		}
		if Alive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// PIDs lists the live processes whose command line is cmdline.
func PIDs(cmdline string) []int {
	return Live(func(c string) bool { return c == cmdline })
}

// Count counts the live processes whose command line is cmdline.
func Count(cmdline string) int { return len(PIDs(cmdline)) }

// Alive says whether pid is a live process (not gone, not a zombie).
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// Listing is `ps`'s view of every process, for a failure's message.
func Listing() string {
	ps, _ := exec.Command("ps", "-eo", "pid,ppid,pgid,sid,stat,cmd").Output()
	return string(ps)
}

// Wait polls until Count(cmdline) is want, failing t after within with a listing.
func Wait(t testing.TB, cmdline string, want int, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for Count(cmdline) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d processes %q, want %d\n%s", what, Count(cmdline), cmdline, want, Listing())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// KillOnCleanup kills, when t ends, what a failure left: the processes with these
// command lines.
func KillOnCleanup(t testing.TB, cmdlines ...string) {
	t.Cleanup(func() {
		for _, c := range cmdlines {
			for _, pid := range PIDs(c) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}
