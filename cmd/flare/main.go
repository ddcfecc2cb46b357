// Command flare is the one CLI of flare-dispatch: run the embedded stack (up), run a
// run end to end on it (run), dispatch to a running stack (dispatch), read logs
// (logs), and be the agent inside a sandbox (agent).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes: 0 success, 1 the run failed, 2 usage or configuration, 3 the stack failed.
// Commands that wait for a run (run, dispatch --wait, logs -f) exit like
// `gh run watch --exit-status`: 0 success (or neutral: skipped), 1 failure, 2 cancelled
// or timed out (the run's own timeout, or the command's --timeout).
const (
	exitOK        = 0
	exitFailed    = 1
	exitUsage     = 2
	exitCancelled = 2
	exitTrouble   = 3
)

type command struct {
	name, summary, usage string
	run                  func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands []command

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatchCommand(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func dispatchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	commands = []command{cmdUp, cmdRun, cmdDispatch, cmdLogs, cmdLs, cmdDeploy, cmdAgent, cmdSupervisor}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "flare: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "flare: offload the expensive half of CI onto a stack you own.")
	fmt.Fprintln(w, "\nUsage: flare <command> [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-17s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'flare <command> --help' for flags and examples.")
}

// newFlags makes a flag set whose --help prints the command's usage and examples.
func newFlags(c command, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("flare "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "flare %s: %s\n\n%s\n\nFlags:\n", c.name, c.summary, c.usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags; it returns an exit code when the command should stop.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
