// Package agent is the program in every sandbox (`flare agent`): an HTTP server that
// the edge starts attempts on. For each attempt it runs the execution's run program
// with a dsl.Ctx whose journal and secrets are the edge's agent API, whose sandbox is
// this machine (git checkouts, commands in their own process group, logs shipped to
// the blob store), heartbeats every two seconds, and reports the output or the typed
// failure at the end. It holds no credential of its own: everything comes with Start.
//
// Routes (paths in agentapi):
//
//	POST /start   agentapi.Start  → 202 {"exec","attempt"}; the attempt runs in the background
//	POST /cancel  agentapi.Cancel → 200 {"cancelled":bool}
//	GET  /cdp?exec=&attempt=      → 101: the attempt's browser session's CDP websocket (cdp.go)
//	GET  /health                  → 200 {"status":"ok","runs":[…],"attempts":[…]}
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/browser"
	"github.com/flare-dispatch/flare-dispatch/agent/logship"
	"github.com/flare-dispatch/flare-dispatch/agent/redact"
	"github.com/flare-dispatch/flare-dispatch/agent/sandbox"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Config configures an agent.
type Config struct {
	Workspace  string       // the sandbox's files: checkouts land here, commands get it as HOME
	Registry   dsl.Registry // the runs this agent can execute (runs.Registry())
	Logger     *slog.Logger // default slog.Default()
	HTTPClient *http.Client // for the edge's agent API and the blob store; nil: http.DefaultClient

	// AuthToken must come as "Authorization: Bearer <token>" on /start and /cancel
	// (edge.AgentServerToken for the sandbox), so a run's command, which can reach this
	// server, cannot cancel or supersede its own attempt. Empty (a Container, which
	// gets no per-sandbox environment): the first /start's token is pinned; it comes
	// from the edge before any of the run's code runs. A request without a token is
	// always 401.
	AuthToken string
	// HeartbeatEvery is the heartbeat period (default 2 s).
	HeartbeatEvery time.Duration
	// HeartbeatTimeout bounds one heartbeat, retries included (default 5 s, well
	// inside the run actor's dead-agent bound), so a hung connection to the edge
	// costs one beat, not all the next ones.
	HeartbeatTimeout time.Duration
	// CallTimeout bounds each try of every other call to the edge's agent API
	// (default agentapi.DefaultTryTimeout).
	CallTimeout time.Duration
	// LogGiveUp is how long one log segment's put is retried before it is lost and the
	// run fails with StorageFull (default logship.DefaultGiveUp).
	LogGiveUp time.Duration
	// KillGrace is how long a command gets between SIGTERM and SIGKILL (default 5 s).
	KillGrace time.Duration
	// GitHubURL is where owner/name repositories are cloned from (default https://github.com).
	GitHubURL string
	// ChromiumBin is the browser runs' chromium (default $CHROME_PATH, else /usr/bin/chromium).
	ChromiumBin string
}

// Reasons an attempt's context ends.
var (
	errCancelled   = errors.New("cancelled by the edge")
	errSuperseded  = errors.New("superseded by a newer attempt")
	errShutdown    = errors.New("the agent is shutting down")
	errRunTimedOut = errors.New("the run exceeded its maximum duration")
)

// exitTimeout bounds the final report to the edge.
const exitTimeout = 30 * time.Second

// Serve runs the agent on ln until ctx ends; then it stops every attempt (killing their
// commands, reporting nothing: the edge sees the heartbeats stop) and returns nil.
func Serve(ctx context.Context, ln net.Listener, cfg Config) error {
	s, err := newServer(cfg)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
	}
	s.shutdown()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	s.wait(s.cfg.KillGrace + 10*time.Second)
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

type server struct {
	cfg  Config
	log  *slog.Logger
	base context.Context
	stop context.CancelCauseFunc

	mu       sync.Mutex
	token    string // AuthToken, or the pinned one
	closing  bool
	attempts map[string]*attempt // by execution
	running  sync.WaitGroup
}

type attempt struct {
	start     agentapi.Start
	cancel    context.CancelCauseFunc
	done      chan struct{}
	suspended atomic.Bool                     // the run suspended itself: no exit is reported
	browser   atomic.Pointer[browser.Browser] // the run's browser (GET /cdp), once set up
}

func newServer(cfg Config) (*server, error) {
	if cfg.Workspace == "" {
		return nil, errors.New("agent: Config.Workspace is required")
	}
	if len(cfg.Registry) == 0 {
		return nil, errors.New("agent: Config.Registry has no runs")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 2 * time.Second
	}
	if cfg.HeartbeatTimeout <= 0 {
		cfg.HeartbeatTimeout = 5 * time.Second
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = 5 * time.Second
	}
	base, stop := context.WithCancelCause(context.Background())
	return &server{cfg: cfg, log: cfg.Logger, base: base, stop: stop, token: cfg.AuthToken, attempts: map[string]*attempt{}}, nil
}

func (s *server) shutdown() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.stop(errShutdown)
}

func (s *server) wait(d time.Duration) {
	done := make(chan struct{})
	go func() { s.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		s.log.Warn("attempts still running at shutdown")
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case agentapi.PathStart:
		s.handleStart(w, r)
	case agentapi.PathCancel:
		s.handleCancel(w, r)
	case agentapi.PathHealth:
		s.handleHealth(w, r)
	case PathCDP:
		s.handleCDP(w, r)
	default:
		writeJSON(w, http.StatusNotFound, agentapi.ErrorBody{Error: "not_found", Message: "no route " + r.URL.Path})
	}
}

func (s *server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, agentapi.ErrorBody{Error: "method_not_allowed", Message: r.Method + " " + r.URL.Path})
		return false
	}
	if !s.tokenOK(r) {
		writeJSON(w, http.StatusUnauthorized, agentapi.ErrorBody{Error: "unauthorized", Message: "missing or wrong bearer token"})
		return false
	}
	return true
}

// tokenOK checks the request's bearer token against the server token (a Container's
// first /start pins it).
func (s *server) tokenOK(r *http.Request) bool {
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	if s.token == "" && got != "" && r.URL.Path == agentapi.PathStart && r.Method == http.MethodPost {
		s.token = got // a Container's first /start: pinned for the agent's life
	}
	want := s.token
	s.mu.Unlock()
	return got != "" && want != "" && constantTimeEqual(got, want)
}

func (s *server) handleStart(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	var st agentapi.Start
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20)).Decode(&st); err != nil {
		writeJSON(w, http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_body", Message: err.Error()})
		return
	}
	switch {
	case st.Exec == "":
		writeJSON(w, http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_body", Message: "exec is required", Field: "exec"})
		return
	case st.Attempt < 1:
		writeJSON(w, http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_body", Message: "attempt must be >= 1", Field: "attempt"})
		return
	case st.EdgeURL == "":
		writeJSON(w, http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_body", Message: "edgeUrl is required", Field: "edgeUrl"})
		return
	case s.cfg.Registry[st.Run] == nil:
		writeJSON(w, http.StatusNotFound, agentapi.ErrorBody{Error: "run_not_found", Message: fmt.Sprintf("unknown run %q", st.Run), Field: "run"})
		return
	}

	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, agentapi.ErrorBody{Error: "shutting_down", Message: "the agent is shutting down"})
		return
	}
	prev := s.attempts[st.Exec]
	if prev != nil {
		switch {
		case prev.start.Attempt == st.Attempt:
			s.mu.Unlock()
			writeJSON(w, http.StatusAccepted, map[string]any{"exec": st.Exec, "attempt": st.Attempt, "duplicate": true})
			return
		case prev.start.Attempt > st.Attempt:
			s.mu.Unlock()
			writeJSON(w, http.StatusConflict, agentapi.ErrorBody{Error: "stale_attempt",
				Message: fmt.Sprintf("attempt %d is older than the running attempt %d", st.Attempt, prev.start.Attempt), Field: "attempt"})
			return
		}
		prev.cancel(errSuperseded)
	}
	ctx, cancel := context.WithCancelCause(s.base)
	a := &attempt{start: st, cancel: cancel, done: make(chan struct{})}
	s.attempts[st.Exec] = a
	s.running.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.running.Done()
		defer close(a.done)
		defer cancel(nil)
		if prev != nil {
			<-prev.done // one attempt of an execution at a time in this workspace
		}
		s.runAttempt(ctx, a)
		s.mu.Lock()
		if s.attempts[st.Exec] == a {
			delete(s.attempts, st.Exec)
		}
		s.mu.Unlock()
	}()
	writeJSON(w, http.StatusAccepted, map[string]any{"exec": st.Exec, "attempt": st.Attempt})
}

func (s *server) handleCancel(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	var c agentapi.Cancel
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&c); err != nil {
		writeJSON(w, http.StatusBadRequest, agentapi.ErrorBody{Error: "invalid_body", Message: err.Error()})
		return
	}
	s.mu.Lock()
	a := s.attempts[c.Exec]
	found := a != nil && (c.Attempt == 0 || c.Attempt == a.start.Attempt)
	s.mu.Unlock()
	if found {
		a.cancel(errCancelled)
	}
	writeJSON(w, http.StatusOK, map[string]any{"cancelled": found})
}

type attemptInfo struct {
	Exec    string `json:"exec"`
	Attempt int    `json:"attempt"`
	Run     string `json:"run"`
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSON(w, http.StatusMethodNotAllowed, agentapi.ErrorBody{Error: "method_not_allowed", Message: r.Method + " " + r.URL.Path})
		return
	}
	s.mu.Lock()
	list := make([]attemptInfo, 0, len(s.attempts))
	for _, a := range s.attempts {
		list = append(list, attemptInfo{a.start.Exec, a.start.Attempt, a.start.Run})
	}
	s.mu.Unlock()
	slices.SortFunc(list, func(a, b attemptInfo) int { return strings.Compare(a.Exec, b.Exec) })
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "runs": s.cfg.Registry.Names(), "attempts": list})
}

// runAttempt runs one attempt to its end and reports it.
func (s *server) runAttempt(ctx context.Context, a *attempt) {
	st := a.start
	log := s.log.With("exec", st.Exec, "attempt", st.Attempt, "run", st.Run)
	run := s.cfg.Registry[st.Run]
	spec := run.Spec()
	client := &agentapi.Client{Base: strings.TrimRight(st.EdgeURL, "/"), Exec: st.Exec, Attempt: st.Attempt, Token: st.Token,
		HTTP: s.cfg.HTTPClient, TryTimeout: s.cfg.CallTimeout}
	red := &redact.Redactor{}

	hbCtx, hbStop := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() { defer close(hbDone); s.heartbeat(hbCtx, client, a.cancel, log) }()
	defer func() { hbStop(); <-hbDone }()

	runCtx, cancelRun := context.WithTimeoutCause(ctx, spec.MaxDuration, errRunTimedOut)
	defer cancelRun()
	log.Info("attempt started")
	start := time.Now()

	output, runErr := s.execute(runCtx, a, run, client, red, log)

	var fail *dsl.Failure
	cause := context.Cause(runCtx)
	if a.suspended.Load() || dsl.IsSuspended(runErr) {
		log.Info("attempt ended: the run is suspended", "durationMs", time.Since(start).Milliseconds())
		return
	}
	switch {
	case errors.Is(runErr, agentapi.ErrStopped) || errors.Is(cause, agentapi.ErrStopped):
		log.Info("attempt stopped by the edge")
		return
	case errors.Is(cause, errSuperseded) || errors.Is(cause, errShutdown):
		log.Info("attempt abandoned", "reason", cause)
		return
	case errors.Is(cause, errCancelled):
		fail = failure((&dsl.Cancelled{Reason: "cancelled"}).Failure())
	case errors.Is(cause, errRunTimedOut):
		fail = failure((&dsl.RunTimedOut{MaxDurationSec: int64(spec.MaxDuration / time.Second)}).Failure())
	case runErr != nil:
		fail = failure(dsl.AsFailure(runErr))
	}
	if fail != nil {
		if cause != nil {
			output = nil // a cancelled or timed-out attempt has no output to report
		}
		fail.Message = red.String(fail.Message)
		fail.Detail = red.JSON(fail.Detail)
		log.Info("attempt failed", "tag", fail.Tag, "message", fail.Message, "durationMs", time.Since(start).Milliseconds())
	} else {
		log.Info("attempt succeeded", "durationMs", time.Since(start).Milliseconds())
	}
	exitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), exitTimeout)
	defer cancel()
	if err := client.Exit(exitCtx, red.JSON(output), fail); err != nil && !errors.Is(err, agentapi.ErrStopped) {
		log.Error("reporting the attempt's end failed", "err", err)
	}
}

func failure(f dsl.Failure) *dsl.Failure { return &f }

// execute builds the attempt's capabilities and runs the program.
func (s *server) execute(ctx context.Context, a *attempt, run dsl.Run, client *agentapi.Client, red *redact.Redactor, log *slog.Logger) (out json.RawMessage, err error) {
	st := a.start
	defer func() {
		if p := recover(); p != nil {
			log.Error("run panicked", "panic", p)
			out, err = nil, &dsl.StepFailed{Cause: fmt.Sprintf("panic: %v", p)}
		}
	}()
	prefix := st.Blobs.LogPrefix
	if prefix == "" {
		prefix = "logs/" + st.Exec + "/"
	}
	sink, numbering := s.logSink(ctx, st, prefix, log)
	sb, err := sandbox.New(sandbox.Config{
		Workspace:    s.cfg.Workspace,
		Local:        st.Local,
		Logs:         sink,
		LogPrefix:    prefix,
		LogNumbering: numbering,
		LogGiveUp:    s.cfg.LogGiveUp,
		Redactor:     red,
		GitToken: func(ctx context.Context, repo string) (string, error) {
			g, err := client.GitCredentials(ctx, repo)
			return g.Token, err
		},
		GitHubURL: s.cfg.GitHubURL,
		KillGrace: s.cfg.KillGrace,
		Log:       log,
		// Preview URLs are the edge's (SANDBOX_PREVIEW_HOSTNAME).
		Expose: func(ctx context.Context, port int) (string, error) {
			p, err := client.Preview(ctx, port)
			return p.URL, err
		},
	})
	if err != nil {
		return nil, &dsl.ContainerLaunchFailed{Image: "agent", Cause: err.Error()}
	}
	c := &dsl.Ctx{
		Context: ctx,
		Exec:    st.Exec,
		Attempt: st.Attempt,
		Run:     st.Run,
		GitHub:  dsl.GitHub{Repo: st.GitHub.Repo, Ref: st.GitHub.Ref, SHA: st.GitHub.SHA, PRNumber: st.GitHub.PRNumber},
		Journal: &edgeJournal{client: client, red: red},
		Sandbox: sb,
		Secrets: &edgeSecrets{client: client, red: red},
		Log:     log,
		Local:   st.Local,

		Config:    edgeConfig{client: client},
		GitHubAPI: edgeGitHub{client: client, red: red},
		Children:  edgeChildren{client: client, red: red},
		Suspender: suspender{client: client, cancel: a.cancel, suspended: &a.suspended},
		IO:        agentIO{client: client, env: ioEnv()},
		Model:     edgeModel{client: client, red: red},
		Comments:  edgeComments{client: client, red: red},
		CI:        edgeCI{client: client},
	}
	s.blobCapabilities(c, st, log)
	// Starts nothing until a run asks; the edge chose a remote browser or none.
	br := browser.New(browser.Config{Bin: s.cfg.ChromiumBin, RemoteURL: st.Browser.CDPURL, Log: log})
	defer br.Close()
	a.browser.Store(br)
	c.Browser = br
	out, err = run.Execute(c, st.Inputs)
	if err == nil && ctx.Err() == nil && !a.suspended.Load() {
		// Saves of toolchain caches (dsl.WarmCaches): before the end is reported, so a
		// Container is not stopped under them; bounded, so a slow store cannot hold the run.
		sctx, cancel := context.WithTimeout(ctx, saveTimeout)
		dsl.RunSucceeded(c, sctx)
		cancel()
	}
	return out, err
}

// saveTimeout bounds the OnSuccess hooks (cache saves) of a run.
const saveTimeout = 10 * time.Minute

// logSink connects to the blob store of Start and starts finding the number of this
// attempt's first command log (after every log an earlier attempt wrote) and what is
// left of the execution's log quota (Start.Blobs.LogQuota, counted across attempts, so
// a retried runaway does not get a fresh budget each time). The listing runs while the
// run checks out; numbering waits for it when the first command starts. Without a
// store, logs are not shipped (the tails still reach the journal) and numbering is nil.
func (s *server) logSink(ctx context.Context, st agentapi.Start, prefix string, log *slog.Logger) (logship.Sink, func() (int, *logship.Quota)) {
	b := st.Blobs
	if b.Endpoint == "" {
		log.Warn("no blob store in Start: command logs are not shipped")
		return nil, nil
	}
	sink, err := logship.NewS3Sink(logship.S3Config{Endpoint: b.Endpoint, Bucket: b.Bucket, AccessKeyID: b.AccessKeyID, Secret: b.Secret, HTTPClient: s.cfg.HTTPClient})
	if err != nil {
		log.Warn("blob store unusable: command logs are not shipped", "err", err)
		return nil, nil
	}
	type listed struct {
		first int
		quota *logship.Quota
	}
	done := make(chan listed, 1)
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		keys, used, err := sink.ListSize(lctx, prefix)
		if err != nil {
			// Number far past any earlier attempt's logs rather than overwrite them.
			first := 1 + (st.Attempt-1)*1000
			if ctx.Err() == nil { // not a run that ended before its first command
				log.Warn("listing earlier logs failed", "err", err, "firstExec", first)
			}
			done <- listed{first, logship.NewQuota(b.LogQuota, 0)}
			return
		}
		done <- listed{logship.LastExec(prefix, keys) + 1, logship.NewQuota(b.LogQuota, used)}
	}()
	return sink, sync.OnceValues(func() (int, *logship.Quota) {
		l := <-done
		return l.first, l.quota
	})
}

// heartbeat tells the edge the attempt is alive until ctx ends. When the edge answers
// that the attempt is over (ErrStopped), it cancels the attempt.
func (s *server) heartbeat(ctx context.Context, client *agentapi.Client, cancel context.CancelCauseFunc, log *slog.Logger) {
	beat := func() bool {
		bctx, cancelBeat := context.WithTimeout(ctx, s.cfg.HeartbeatTimeout)
		err := client.Heartbeat(bctx)
		cancelBeat()
		switch {
		case errors.Is(err, agentapi.ErrStopped):
			log.Info("the edge stopped this attempt")
			cancel(agentapi.ErrStopped)
			return false
		case err != nil && ctx.Err() == nil:
			log.Warn("heartbeat failed", "err", err)
		}
		return true
	}
	if !beat() {
		return
	}
	t := time.NewTicker(s.cfg.HeartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !beat() {
				return
			}
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
