package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/edge/local/sandboxes"
)

var cmdUp = command{
	name:    "up",
	summary: "run the embedded stack (edge, actors, SQLite, S3 store, agents) until interrupted",
	usage: `Examples:
  flare up                         # listens on 127.0.0.1:8787, state in ./.flare
  flare up --addr 127.0.0.1:0 --data /tmp/flare
  ADMISSION_CAP=4 flare up
  flare up --no-isolation          # without bubblewrap: commands can read the stack's secrets
  flare up --fresh-sandbox         # every sandbox starts empty, as a Container: caches come from the blob store
  flare up --keep-workspace        # keep each run's workspace under $TMPDIR/flare-sandboxes-* after it ends

Configuration uses the Worker's names from the environment: HMAC_SECRET, ADMIN_TOKEN,
ADMISSION_CAP, PUBLIC_ORIGIN, GITHUB_APP_ID, ... Secrets that are not set are generated
once and kept in <data>/secrets.json (mode 0600); the secret itself is never printed.`,
}

func init() { cmdUp.run = runUp }

func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdUp, stderr)
	addr := fs.String("addr", envOr("FLARE_ADDR", "127.0.0.1:8787"), "listen address HOST:PORT")
	data := fs.String("data", envOr("FLARE_DATA", ".flare"), "state directory")
	verbose := fs.Bool("v", false, "log debug detail")
	noIso := fs.Bool("no-isolation", false, "run agents and their commands as this user without bubblewrap: they can then read the stack's secrets, files and processes")
	fresh := fs.Bool("fresh-sandbox", false, freshSandboxHelp)
	keep := fs.Bool("keep-workspace", false, "keep each run's workspace after it ends, for debugging (by default a run's end removes it)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	st, err := openStack(ctx, *addr, *data, *verbose, !*noIso, *fresh, *keep, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "flare up:", err)
		return exitTrouble
	}
	defer st.Close(context.Background())
	fmt.Fprintf(stdout, "flare-dispatch is up at %s\n", st.URL)
	fmt.Fprintf(stdout, "  dispatcher secret fingerprint: %s (the secret is in %s, mode 0600)\n",
		edge.Fingerprint(st.Secrets.HMACSecret), local.SecretsPath(st.DataDir))
	fmt.Fprintf(stdout, "  runs: %v\n  try:  flare dispatch offload-test --repo . --command 'go version'\n", registry().Names())
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping")
	return exitOK
}

const freshSandboxHelp = "start every sandbox empty, as a Container starts: no earlier run's files and none of this machine's Go, npm or Cargo caches (toolchain caches then come from the blob store)"

// openStack boots the embedded stack with this binary as the agent command; with
// isolate, each agent runs under bubblewrap, which must work here; with fresh, every
// sandbox starts empty (local.Options.FreshSandbox); keepWorkspaces keeps each run's
// workspace after it ends.
func openStack(ctx context.Context, addr, data string, verbose, isolate, fresh, keepWorkspaces bool, stderr io.Writer) (*local.Stack, error) {
	if isolate {
		if err := sandboxes.CheckIsolation(); err != nil {
			return nil, err
		}
	} else {
		fmt.Fprintln(stderr, "WARNING: --no-isolation: run commands execute as this user, outside any sandbox, and can read "+
			"the stack's secrets ("+local.SecretsPath(data)+"), its databases, and other processes' environment")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return local.Open(ctx, local.Options{DataDir: data, Addr: addr, AgentCommand: []string{self, "agent"},
		Runs: registry(), Log: log, NoIsolation: !isolate, FreshSandbox: fresh, KeepWorkspaces: keepWorkspaces})
}
