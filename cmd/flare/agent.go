package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/agent"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/edge/local/sandboxes"
)

var cmdAgent = command{
	name:    "agent",
	summary: "be the agent inside a sandbox: receive runs from the edge and execute them",
	usage: `Started by the sandbox (a Container, or flare up locally); rarely run by hand.
  flare agent --listen 0.0.0.0:8080 --workspace /workspace`,
}

func init() { cmdAgent.run = runAgent }

func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdAgent, stderr)
	listen := fs.String("listen", envOr("FLARE_AGENT_LISTEN", "0.0.0.0:8080"), "listen address")
	workspace := fs.String("workspace", envOr("FLARE_WORKSPACE", "/workspace"), "workspace directory")
	logGiveUp := fs.Duration("log-give-up", 0, "retry a log segment's upload this long before it is lost and the run fails with StorageFull (default 2m)")
	subreaper := fs.Bool(strings.TrimPrefix(sandboxes.SubreaperFlag, "--"), false,
		"(flare up --no-isolation, Linux) run the agent as a child and kill everything it started once it exits")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if *subreaper {
		return sandboxes.Supervise()
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "flare agent:", err)
		return exitTrouble
	}
	fmt.Fprintf(stdout, "%shttp://%s\n", sandboxes.ReadyPrefix, ln.Addr())
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := agent.Serve(ctx, ln, agent.Config{Workspace: *workspace, Registry: registry(), Logger: log,
		AuthToken: os.Getenv(agentapi.EnvServerToken), LogGiveUp: *logGiveUp}); err != nil && ctx.Err() == nil {
		fmt.Fprintln(stderr, "flare agent:", err)
		return exitTrouble
	}
	return exitOK
}
