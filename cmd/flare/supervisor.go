package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/edge/local/sandboxes"
)

var cmdSupervisor = command{
	name:    "agent-supervisor",
	summary: "stand in for Cloudflare Containers under wrangler dev: one agent per sandbox id",
	usage: `The Worker's sandbox classes become LocalAgentProxy when the var AGENT_URL is set, and
forward every request to AGENT_URL with the sandbox id in X-Flare-Sandbox. This is
that URL: it starts one 'flare agent' child process per sandbox id (its own workspace
under --root, an allowlisted environment, its own process group) and hands it the
request, as a Container would run the agent from sandbox-images/.

  flare agent-supervisor --listen 127.0.0.1:8788 --root .flare/wrangler-sandboxes
  cd worker && npm run dev -- --var AGENT_URL:http://127.0.0.1:8788`,
}

func init() { cmdSupervisor.run = runSupervisor }

// SupervisorReadyPrefix starts the line the supervisor prints on stdout once it listens.
const SupervisorReadyPrefix = "flare-agent-supervisor listening on "

func runSupervisor(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdSupervisor, stderr)
	listen := fs.String("listen", "127.0.0.1:8788", "listen address")
	root := fs.String("root", filepath.Join(".flare", "wrangler-sandboxes"), "directory of the sandboxes' workspaces")
	verbose := fs.Bool("v", false, "log every request")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "flare agent-supervisor:", err)
		return exitTrouble
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		fmt.Fprintln(stderr, "flare agent-supervisor:", err)
		return exitTrouble
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	procs := &sandboxes.Procs{Command: []string{self, "agent"}, Root: *root, Log: log}
	defer procs.Close()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(stderr, "flare agent-supervisor:", err)
		return exitTrouble
	}
	fmt.Fprintf(stdout, "%shttp://%s\n", SupervisorReadyPrefix, ln.Addr())
	srv := &http.Server{Handler: supervisor{procs: procs, log: log}, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, "flare agent-supervisor:", err)
		return exitTrouble
	}
	return exitOK
}

// supervisor routes the agent protocol (agentapi) to the agent of the sandbox
// named in X-Flare-Sandbox, starting it on the first /start.
type supervisor struct {
	procs *sandboxes.Procs
	log   *slog.Logger
}

func (s supervisor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sandbox := r.Header.Get("X-Flare-Sandbox")
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "sandbox", sandbox)
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.Method == http.MethodGet && r.URL.Path == agentapi.PathHealth {
		reply(http.StatusOK, map[string]any{"status": "ok", "agents": s.procs.Running()})
		return
	}
	if r.Method != http.MethodPost || (r.URL.Path != agentapi.PathStart && r.URL.Path != agentapi.PathCancel) {
		reply(http.StatusNotFound, agentapi.ErrorBody{Error: "not_found", Message: r.Method + " " + r.URL.Path})
		return
	}
	if sandbox == "" || filepath.Base(sandbox) != sandbox || sandbox == "." || sandbox == ".." {
		reply(http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_sandbox", Message: "X-Flare-Sandbox must name one sandbox", Field: "X-Flare-Sandbox"})
		return
	}
	if r.URL.Path == agentapi.PathCancel {
		var c agentapi.Cancel
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&c); err != nil {
			reply(http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_body", Message: err.Error()})
			return
		}
		// Cancels the attempt, or kills the sandbox's agent if it does not answer;
		// a sandbox without an agent has nothing to cancel.
		c.ServerToken = bearerOf(r)
		_ = s.procs.Stop(r.Context(), sandbox, c)
		reply(http.StatusOK, map[string]any{"cancelled": true})
		return
	}
	var st agentapi.Start
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&st); err != nil {
		reply(http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_body", Message: err.Error()})
		return
	}
	st.ServerToken = bearerOf(r) // the edge's token for this sandbox's agent, passed on
	if err := s.procs.Start(r.Context(), sandbox, "", st); err != nil {
		s.log.Warn("agent start failed", "sandbox", sandbox, "exec", st.Exec, "err", err)
		reply(http.StatusBadGateway, agentapi.ErrorBody{Error: "agent_start_failed", Message: err.Error()})
		return
	}
	reply(http.StatusAccepted, map[string]any{"exec": st.Exec, "attempt": st.Attempt, "sandbox": sandbox})
}

// bearerOf is the request's bearer token ("" without one).
func bearerOf(r *http.Request) string {
	t, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return t
}
