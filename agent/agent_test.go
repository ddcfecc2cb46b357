package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

const token = "agent-token-1"

// fakeEdge speaks the edge's side of the agent API with an in-memory journal.
type fakeEdge struct {
	t   *testing.T
	srv *httptest.Server

	mu         sync.Mutex
	journal    map[string]agentapi.StepEnd
	begun      []string
	secrets    map[string]string
	heartbeats int
	stopAfter  int           // answer heartbeats with 409 after this many (0: never)
	hangFirst  chan struct{} // when set, the first heartbeat hangs until it is closed
	beats      chan int      // when set, gets the count after each answered heartbeat
	exits      chan agentapi.Exit
}

func newEdge(t *testing.T) *fakeEdge {
	e := &fakeEdge{t: t, journal: map[string]agentapi.StepEnd{}, secrets: map[string]string{}, exits: make(chan agentapi.Exit, 4)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/agent/{exec}/heartbeat", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.heartbeats++
		n, stop, hang, beats := e.heartbeats, e.stopAfter > 0 && e.heartbeats > e.stopAfter, e.hangFirst, e.beats
		e.mu.Unlock()
		if hang != nil && n == 1 {
			<-hang // a connection that never answers
			return
		}
		if beats != nil {
			defer func() {
				select {
				case beats <- n:
				default:
				}
			}()
		}
		if stop {
			e.reply(w, http.StatusConflict, agentapi.ErrorBody{Error: "superseded"})
			return
		}
		e.reply(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST /v1/agent/{exec}/steps/{step}/begin", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		step := r.PathValue("step")
		e.begun = append(e.begun, step)
		if end, ok := e.journal[step]; ok {
			e.reply(w, http.StatusOK, agentapi.StepDecision{Done: true, Result: end.Result, Failure: end.Failure})
			return
		}
		e.reply(w, http.StatusOK, agentapi.StepDecision{})
	})
	mux.HandleFunc("POST /v1/agent/{exec}/steps/{step}/end", func(w http.ResponseWriter, r *http.Request) {
		var end agentapi.StepEnd
		e.decode(r, &end)
		e.mu.Lock()
		e.journal[r.PathValue("step")] = end
		e.mu.Unlock()
		e.reply(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST /v1/agent/{exec}/secrets", func(w http.ResponseWriter, r *http.Request) {
		var req agentapi.SecretsRequest
		e.decode(r, &req)
		e.mu.Lock()
		defer e.mu.Unlock()
		out := agentapi.Secrets{Values: map[string]string{}}
		for _, k := range req.Keys {
			if v, ok := e.secrets[req.Prefix+k]; ok {
				out.Values[k] = v
			} else {
				out.Missing = append(out.Missing, k)
			}
		}
		e.reply(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/agent/{exec}/exit", func(w http.ResponseWriter, r *http.Request) {
		var x agentapi.Exit
		e.decode(r, &x)
		e.exits <- x
		e.reply(w, http.StatusOK, struct{}{})
	})
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			e.reply(w, http.StatusUnauthorized, agentapi.ErrorBody{Error: "unauthorized"})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *fakeEdge) decode(r *http.Request, v any) {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		e.t.Errorf("edge: bad body on %s: %v", r.URL.Path, err)
	}
}

func (e *fakeEdge) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (e *fakeEdge) exit(t *testing.T) agentapi.Exit {
	t.Helper()
	select {
	case x := <-e.exits:
		return x
	case <-time.After(30 * time.Second):
		t.Fatal("no exit reported")
	}
	return agentapi.Exit{}
}

// startAgent serves an agent until the test ends and returns its URL.
func startAgent(t *testing.T, mod func(*agent.Config)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{Workspace: t.TempDir(), Registry: runs.Registry(), HeartbeatEvery: 50 * time.Millisecond, KillGrace: 200 * time.Millisecond,
		AuthToken: serverToken,
		Logger:    slog.New(slog.NewTextHandler(testLog{t}, nil))}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Serve(ctx, ln, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// serverToken is the agents' server token in these tests; post sends it unless hdr
// sets Authorization.
const serverToken = "server-token"

func post(t *testing.T, url string, body any, hdr ...string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+serverToken)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String()
}

func gitRepo(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "web")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "VERSION"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "--quiet"}, {"add", "VERSION"}, {"commit", "--quiet", "-m", "one"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return dir, strings.TrimSpace(string(out))
}

func start(e *fakeEdge, exec string, attempt int, inputs any, blobs agentapi.Blobs) agentapi.Start {
	in, _ := json.Marshal(inputs)
	return agentapi.Start{Exec: exec, Attempt: attempt, Run: "offload-test", EdgeURL: e.srv.URL, Token: token,
		GitHub: agentapi.GitHub{Repo: "acme/web", SHA: "0123456"}, Inputs: in, Blobs: blobs, Local: true}
}

func TestOffloadTestRunsEndToEnd(t *testing.T) {
	repo, sha := gitRepo(t)
	st := s3test.Start(t)
	exec := "offload-test:acme_web:0123456789ab"
	id, secret := st.Credential(t, exec, "acme/web")
	e := newEdge(t)
	e.secrets["ci/API_KEY"] = "k3y-s3cr3t"
	url := startAgent(t, nil)

	code, body := post(t, url+agentapi.PathStart, start(e, exec, 1, map[string]any{
		"repo": repo, "sha": sha, "command": `cat VERSION; echo "key=$API_KEY mode=$MODE"; echo warn >&2`,
		"env": map[string]string{"MODE": "fast"}, "secrets": []string{"API_KEY"}, "secretPrefix": "ci/",
	}, agentapi.Blobs{Endpoint: st.URL, Bucket: st.Bucket, AccessKeyID: id, Secret: secret, LogPrefix: "logs/" + exec + "/"}))
	if code != http.StatusAccepted {
		t.Fatalf("start: %d %s", code, body)
	}
	x := e.exit(t)
	if x.Failure != nil {
		t.Fatalf("failed: %+v", x.Failure)
	}
	var out struct {
		ExitCode   int    `json:"exitCode"`
		DurationMs int64  `json:"durationMs"`
		LogURI     string `json:"logUri"`
	}
	if err := json.Unmarshal(x.Output, &out); err != nil || out.ExitCode != 0 || out.LogURI != "logs/"+exec+"/exec.ndjson" {
		t.Fatalf("output %s (%v)", x.Output, err)
	}
	e.mu.Lock()
	steps := strings.Join(e.begun, ",")
	execEnd := e.journal["exec"]
	e.mu.Unlock()
	if steps != "checkout,exec" {
		t.Fatalf("steps %s", steps)
	}
	if strings.Contains(string(execEnd.Result), "k3y-s3cr3t") || !strings.Contains(string(execEnd.Result), "key=*** mode=fast") {
		t.Fatalf("journal exec result %s", execEnd.Result)
	}
	var logs strings.Builder
	for _, k := range st.Keys(t, "logs/"+exec+"/") {
		logs.WriteString(st.Get(t, k))
	}
	for _, want := range []string{`"line":"v1"`, `"line":"key=*** mode=fast"`, `{"stream":"stderr","line":"warn"}`, `"stream":"exit","exitCode":0`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "k3y-s3cr3t") {
		t.Fatal("secret in logs")
	}
}

func TestNonZeroExitFailsUnlessReportOnly(t *testing.T) {
	repo, sha := gitRepo(t)
	e := newEdge(t)
	url := startAgent(t, nil)

	post(t, url+agentapi.PathStart, start(e, "ex-red", 1, map[string]any{"repo": repo, "sha": sha, "command": "echo 'FAIL adds' >&2; exit 2"}, agentapi.Blobs{}))
	x := e.exit(t)
	if x.Failure == nil || x.Failure.Tag != dsl.TagCommandFailed {
		t.Fatalf("exit %+v", x)
	}
	var cf dsl.CommandFailed
	if err := json.Unmarshal(x.Failure.Detail, &cf); err != nil || cf.ExitCode != 2 || cf.StderrTail != "FAIL adds\n" {
		t.Fatalf("detail %s", x.Failure.Detail)
	}

	post(t, url+agentapi.PathStart, start(e, "ex-report", 1, map[string]any{"repo": repo, "sha": sha, "command": "exit 2", "reportOnly": true}, agentapi.Blobs{}))
	x = e.exit(t)
	if x.Failure != nil || !strings.Contains(string(x.Output), `"exitCode":2`) {
		t.Fatalf("reportOnly exit %+v %s", x.Failure, x.Output)
	}
}

func TestMissingRequiredSecretFailsBeforeTheCommand(t *testing.T) {
	repo, sha := gitRepo(t)
	e := newEdge(t)
	url := startAgent(t, nil)
	marker := filepath.Join(t.TempDir(), "ran")
	post(t, url+agentapi.PathStart, start(e, "ex-sec", 1, map[string]any{"repo": repo, "sha": sha, "command": "touch " + marker, "secrets": []string{"NOPE"}}, agentapi.Blobs{}))
	x := e.exit(t)
	if x.Failure == nil || x.Failure.Tag != dsl.TagSecretsMissing || !strings.Contains(string(x.Failure.Detail), "NOPE") {
		t.Fatalf("exit %+v", x.Failure)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran")
	}
}

func TestNewAttemptReplaysCompletedSteps(t *testing.T) {
	repo, sha := gitRepo(t)
	e := newEdge(t)
	// Attempt 1 completed both steps before the agent died.
	e.journal["checkout"] = agentapi.StepEnd{Attempt: 1, Result: json.RawMessage(`{"dir":"/gone"}`)}
	e.journal["exec"] = agentapi.StepEnd{Attempt: 1, Result: json.RawMessage(`{"exitCode":0,"durationMs":4242,"logUri":"logs/ex-replay/exec.ndjson"}`)}
	url := startAgent(t, nil)
	marker := filepath.Join(t.TempDir(), "ran")
	post(t, url+agentapi.PathStart, start(e, "ex-replay", 2, map[string]any{"repo": repo, "sha": sha, "command": "touch " + marker}, agentapi.Blobs{}))
	x := e.exit(t)
	if x.Failure != nil || string(x.Output) != `{"exitCode":0,"durationMs":4242,"logUri":"logs/ex-replay/exec.ndjson"}` {
		t.Fatalf("exit %+v %s", x.Failure, x.Output)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a completed step ran again")
	}
}

func TestEdgeStoppingTheAttemptKillsItsCommand(t *testing.T) {
	repo, sha := gitRepo(t)
	e := newEdge(t)
	e.stopAfter = 3
	url := startAgent(t, nil)
	pidFile := filepath.Join(t.TempDir(), "pid")
	begin := time.Now()
	post(t, url+agentapi.PathStart, start(e, "ex-stop", 1, map[string]any{"repo": repo, "sha": sha, "command": "sleep 60 & echo $! > " + pidFile + "; wait"}, agentapi.Blobs{}))
	waitIdle(t, url)
	if time.Since(begin) > 20*time.Second {
		t.Fatal("attempt outlived the edge's stop")
	}
	select {
	case x := <-e.exits:
		t.Fatalf("a stopped attempt reported %+v", x)
	default:
	}
	if b, err := os.ReadFile(pidFile); err == nil {
		if _, err := os.Stat("/proc/" + strings.TrimSpace(string(b))); err == nil {
			stat, _ := os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/stat")
			if !strings.Contains(string(stat), ") Z") {
				t.Fatalf("command still running: %s", stat)
			}
		}
	}
}

func TestCancelReportsCancelled(t *testing.T) {
	repo, sha := gitRepo(t)
	e := newEdge(t)
	url := startAgent(t, nil)
	post(t, url+agentapi.PathStart, start(e, "ex-cancel", 1, map[string]any{"repo": repo, "sha": sha, "command": "sleep 60"}, agentapi.Blobs{}))
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mu.Lock()
		began := len(e.begun) >= 2
		e.mu.Unlock()
		if began {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the command's step never began")
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := post(t, url+agentapi.PathCancel, agentapi.Cancel{Exec: "ex-cancel", Attempt: 1})
	if code != http.StatusOK || !strings.Contains(body, `"cancelled":true`) {
		t.Fatalf("cancel: %d %s", code, body)
	}
	x := e.exit(t)
	if x.Failure == nil || x.Failure.Tag != dsl.TagCancelled {
		t.Fatalf("exit %+v", x)
	}
}

func TestStartIsValidatedAndAuthenticated(t *testing.T) {
	e := newEdge(t)
	url := startAgent(t, func(c *agent.Config) { c.AuthToken = "sekrit" })
	auth := []string{"Authorization", "Bearer sekrit"}
	s := start(e, "ex-v", 1, map[string]any{}, agentapi.Blobs{})

	if code, _ := post(t, url+agentapi.PathStart, s); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	bad := s
	bad.Run = "no-such-run"
	if code, body := post(t, url+agentapi.PathStart, bad, auth...); code != http.StatusNotFound || !strings.Contains(body, "run_not_found") {
		t.Fatalf("unknown run: %d %s", code, body)
	}
	bad = s
	bad.Attempt = 0
	if code, _ := post(t, url+agentapi.PathStart, bad, auth...); code != http.StatusBadRequest {
		t.Fatalf("attempt 0: %d", code)
	}
	resp, err := http.Get(url + agentapi.PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Status string   `json:"status"`
		Runs   []string `json:"runs"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if h.Status != "ok" || strings.Join(h.Runs, ",") != strings.Join(runs.Registry().Names(), ",") {
		t.Fatalf("health %+v", h)
	}
	// Invalid inputs reach the agent only if the edge let them through: a typed failure.
	code, _ := post(t, url+agentapi.PathStart, s, auth...)
	if code != http.StatusAccepted {
		t.Fatalf("start: %d", code)
	}
	if x := e.exit(t); x.Failure == nil || x.Failure.Tag != dsl.TagStepFailed || !strings.Contains(x.Failure.Message, "repo: is required") {
		t.Fatalf("exit %+v", x.Failure)
	}
}

// testLog sends the agent's log to the test's.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// waitIdle waits until the agent runs no attempt. An attempt is registered before
// the agent answers its start, so one started before the call is seen.
func waitIdle(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url + agentapi.PathHealth)
		if err == nil {
			var h struct {
				Attempts []json.RawMessage `json:"attempts"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if len(h.Attempts) == 0 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("attempt still running")
}

// The agent's server takes no request without the edge's token (issue 9, item 8: a
// run's command could cancel or supersede its own attempt). A Container's agent has no
// token configured: it pins the first /start's. Before the check, an agent without a
// configured token accepted the tokenless /cancel below.
func TestAgentServerNeedsTheSandboxToken(t *testing.T) {
	e := newEdge(t)
	url := startAgent(t, func(c *agent.Config) { c.AuthToken = "" })
	none := []string{"Authorization", ""}
	if code, _ := post(t, url+agentapi.PathCancel, agentapi.Cancel{Exec: "ex-pin"}, none...); code != http.StatusUnauthorized {
		t.Fatalf("cancel without a token: %d", code)
	}
	if code, _ := post(t, url+agentapi.PathStart, start(e, "ex-pin", 1, map[string]any{}, agentapi.Blobs{}), none...); code != http.StatusUnauthorized {
		t.Fatalf("start without a token: %d", code)
	}
	// The first /start with a token pins it (the default post sends serverToken).
	if code, body := post(t, url+agentapi.PathStart, start(e, "ex-pin", 1, map[string]any{}, agentapi.Blobs{})); code != http.StatusAccepted {
		t.Fatalf("first start: %d %s", code, body)
	}
	e.exit(t)
	for _, h := range [][]string{none, {"Authorization", "Bearer another"}} {
		if code, _ := post(t, url+agentapi.PathCancel, agentapi.Cancel{Exec: "ex-pin"}, h...); code != http.StatusUnauthorized {
			t.Fatalf("cancel with %q: %d", h[1], code)
		}
		if code, _ := post(t, url+agentapi.PathStart, start(e, "ex-pin", 2, map[string]any{}, agentapi.Blobs{}), h...); code != http.StatusUnauthorized {
			t.Fatalf("start with %q after the pin: %d", h[1], code)
		}
	}
	if code, _ := post(t, url+agentapi.PathCancel, agentapi.Cancel{Exec: "ex-pin"}); code != http.StatusOK {
		t.Fatalf("cancel with the pinned token: %d", code)
	}
}

// One hung connection to the edge must not stop the heartbeats (issue 9, item 8): the
// first heartbeat never gets an answer, and later ones still arrive. Without the
// heartbeat's own timeout the loop waits on the first forever and no later beat comes.
func TestAHungHeartbeatDoesNotStopTheNextOnes(t *testing.T) {
	e := newEdge(t)
	hang := make(chan struct{})
	e.mu.Lock()
	e.hangFirst, e.beats = hang, make(chan int, 16)
	e.mu.Unlock()
	// Closed before the edge's server shuts down (cleanups run last-in first-out).
	t.Cleanup(func() { close(hang) })
	url := startAgent(t, func(c *agent.Config) { c.HeartbeatTimeout = 200 * time.Millisecond })
	repo, sha := gitRepo(t)
	if code, body := post(t, url+agentapi.PathStart, start(e, "ex-hang", 1, map[string]any{"repo": repo, "sha": sha, "command": "sleep 30"}, agentapi.Blobs{})); code != http.StatusAccepted {
		t.Fatalf("start: %d %s", code, body)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case n := <-e.beats:
			if n >= 3 {
				post(t, url+agentapi.PathCancel, agentapi.Cancel{Exec: "ex-hang"})
				e.exit(t)
				return
			}
		case <-deadline:
			t.Fatal("no heartbeat after the hung one")
		}
	}
}
