//go:build !js

package workertest

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/internal/ci"

	_ "modernc.org/sqlite" // the driver "sqlite", to read Durable Object storage
)

// These tests run the real Worker (Go runtime, JavaScript entry, Durable Objects,
// D1/KV/R2 simulators) under `wrangler dev`. -short skips them: each test builds
// the wasm once and starts workerd, about 10-20 s in all, and needs node_modules.

func start(t *testing.T, opt Options) *Worker {
	t.Helper()
	ci.SkipShort(t, "starts wrangler dev")
	root := Require(t)
	w, err := Start(t.Context(), root, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Stop()
		if t.Failed() {
			t.Logf("--- wrangler dev output ---\n%s", w.Logs())
		}
	})
	return w
}

// agent is a fake sandbox agent: it records what reached it.
type agent struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newAgent(t *testing.T) *agent {
	a := &agent{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Method+" "+r.URL.Path+" sandbox="+r.Header.Get("X-Flare-Sandbox"))
		a.mu.Unlock()
		w.Header().Set("X-Agent", "fake")
		fmt.Fprintf(w, "agent saw %s", r.URL.Path)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *agent) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

var client = &http.Client{Timeout: 30 * time.Second}

func get(t *testing.T, w *Worker, path string) (int, []byte) {
	t.Helper()
	res, err := client.Get(w.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func getJSON(t *testing.T, w *Worker, path string, v any) {
	t.Helper()
	code, b := get(t, w, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

// call sends m to the actor at to through the Worker's dev route (Worker → DO).
func call(t *testing.T, w *Worker, to actors.Addr, m actors.Message) actors.Message {
	t.Helper()
	body, err := actors.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	res, err := client.Post(w.URL+"/__dev/actors/"+to.Kind+"/"+to.Key, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s to %s: %d %s", m.Type(), to, res.StatusCode, b)
	}
	reply, err := actors.Unmarshal(b)
	if err != nil {
		t.Fatalf("%s to %s: reply %s: %v", m.Type(), to, b, err)
	}
	return reply
}

func status(t *testing.T, w *Worker, exec string) actors.RunStatus {
	t.Helper()
	st, ok := call(t, w, actors.RunAddr(exec), actors.RunQuery{Exec: exec}).(actors.RunStatus)
	if !ok {
		t.Fatalf("RunQuery %s: not a RunStatus", exec)
	}
	return st
}

// eventually polls f until it returns nil or the limit passes.
func eventually(t *testing.T, limit time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type health struct {
	OK       bool   `json:"ok"`
	Runtime  string `json:"runtime"`
	Instance string `json:"instance"`
}

type runtimeStats struct {
	Generation int  `json:"generation"`
	Alive      bool `json:"alive"`
	Pending    int  `json:"pending"` // Go calls in flight (requests, actor deliveries)
	JSRefs     int  `json:"jsRefs"`
	Go         struct {
		Goroutines  int `json:"goroutines"`
		LiveObjects int `json:"liveObjects"`
	} `json:"go"`
}

func TestWorker(t *testing.T) {
	ag := newAgent(t)
	w := start(t, Options{PersistDir: t.TempDir(), AgentURL: ag.URL})

	var first health
	t.Run("HealthIsServedByGo", func(t *testing.T) {
		getJSON(t, w, "/__dev/health", &first)
		if !first.OK || first.Runtime != "go" || first.Instance == "" {
			t.Fatalf("health = %+v", first)
		}
		var js health
		getJSON(t, w, "/__dev/js/health", &js)
		if js.Runtime != "js" {
			t.Fatalf("js health = %+v", js)
		}
	})

	t.Run("OneRuntimeServesEveryRequest", func(t *testing.T) {
		for range 20 {
			var h health
			getJSON(t, w, "/__dev/health", &h)
			if h.Instance != first.Instance {
				t.Fatalf("instance changed from %s to %s without a failure", first.Instance, h.Instance)
			}
		}
	})

	t.Run("RequestAndResponseBodiesRoundTrip", func(t *testing.T) {
		body := make([]byte, 3<<20)
		rand.Read(body)
		res, err := client.Post(w.URL+"/__dev/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.Equal(got, body) {
			t.Fatalf("echo: %d, %d bytes back of %d", res.StatusCode, len(got), len(body))
		}
	})

	t.Run("FlushStreamsTheResponse", func(t *testing.T) {
		start := time.Now()
		res, err := client.Get(w.URL + "/__dev/stream?n=3&gap=500ms&type=application/x-ndjson")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		line := make([]byte, len("chunk 0\n"))
		if _, err := io.ReadFull(res.Body, line); err != nil {
			t.Fatal(err)
		}
		if first := time.Since(start); first > 400*time.Millisecond {
			t.Fatalf("first chunk after %v: not streamed", first)
		}
		rest, _ := io.ReadAll(res.Body)
		if got := string(line) + string(rest); got != "chunk 0\nchunk 1\nchunk 2\n" {
			t.Fatalf("stream = %q", got)
		}
	})

	t.Run("OutboundFetchGoesThroughTheFetchAPI", func(t *testing.T) {
		code, b := get(t, w, "/__dev/fetch?url="+ag.URL+"/direct")
		if code != 200 || string(b) != "agent saw /direct" {
			t.Fatalf("fetch: %d %s", code, b)
		}
	})

	t.Run("SandboxesForwardToTheLocalAgent", func(t *testing.T) {
		for _, binding := range []string{"RUNS_SANDBOX", "RUNS_SANDBOX_BROWSER"} {
			code, b := get(t, w, "/__dev/sandbox/"+binding+"/sb-1/v1/ping")
			if code != 200 || string(b) != "agent saw /v1/ping" {
				t.Fatalf("%s: %d %s", binding, code, b)
			}
		}
		want := "GET /v1/ping sandbox=sb-1"
		if got := ag.requests(); !contains(got, want) {
			t.Fatalf("agent saw %v, want %q", got, want)
		}
	})

	t.Run("BindingsWorkInTheSharedRuntime", func(t *testing.T) {
		if code, b := get(t, w, "/__dev/d1?n=10"); code != 200 || string(b) != `{"queries":10,"sum":55}` {
			t.Fatalf("d1: %d %s", code, b)
		}
		blob := make([]byte, 1<<20)
		rand.Read(blob)
		res, err := client.Post(w.URL+"/__dev/r2/artifact.bin", "application/octet-stream", bytes.NewReader(blob))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.Equal(got, blob) {
			t.Fatalf("r2: %d, %d bytes", res.StatusCode, len(got))
		}
	})

	t.Run("CronTriggersReachGo", func(t *testing.T) {
		if code, b := get(t, w, "/__scheduled?cron=*/5+*+*+*+*"); code != 200 {
			t.Fatalf("__scheduled: %d %s", code, b)
		}
		var got []struct {
			Cron  string
			Fired []any
		}
		getJSON(t, w, "/__dev/scheduled", &got)
		if len(got) != 1 || got[0].Cron != "*/5 * * * *" || len(got[0].Fired) != 0 {
			t.Fatalf("scheduled = %+v (no run declares this cron)", got)
		}
	})

	t.Run("ActorsRunAcrossDurableObjects", func(t *testing.T) {
		start := actors.RunStart{Exec: "e1", Run: "checks", Pool: "p1", Sandbox: "sb1", MaxDuration: 3 * time.Second}
		st := call(t, w, actors.RunAddr("e1"), start).(actors.RunStatus)
		if !st.Created || st.Status != actors.StatusQueued {
			t.Fatalf("RunStart: %+v", st)
		}
		// run → admission → run → lease → run: StartAgent.
		eventually(t, 10*time.Second, func() error {
			if st := status(t, w, "e1"); st.Status != actors.StatusLeased || st.Attempt != 1 {
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
		if st := call(t, w, actors.RunAddr("e1"), start).(actors.RunStatus); st.Created {
			t.Fatal("a second RunStart created the execution again")
		}
		var fx []struct{ From, Type string }
		getJSON(t, w, "/__dev/effects", &fx)
		if !containsEffect(fx, "run/e1", "actors.StartAgent") {
			t.Fatalf("no StartAgent among %v", fx)
		}
	})

	t.Run("AlarmsFire", func(t *testing.T) {
		// e1's deadline (3 s) is its alarm: the run times out and releases its slot
		// and lease, so a second run on the same sandbox gets them.
		eventually(t, 15*time.Second, func() error {
			if st := status(t, w, "e1"); st.Status != actors.StatusTimedOut {
				return fmt.Errorf("status %s", st.Status)
			}
			return nil
		})
		call(t, w, actors.RunAddr("e2"), actors.RunStart{Exec: "e2", Run: "checks", Pool: "p1", Sandbox: "sb1", MaxDuration: time.Hour})
		eventually(t, 10*time.Second, func() error {
			if st := status(t, w, "e2"); st.Status != actors.StatusLeased {
				return fmt.Errorf("e2 status %s", st.Status)
			}
			return nil
		})
	})

	t.Run("GoTimersOutliveTheRequestThatArmedThem", func(t *testing.T) {
		// Go's wake-up timeout is armed in the request that arms the timer, which ends
		// at once; workerd drops that request's setTimeout. The waiting request's pump
		// must wake Go (without it, this wait hangs until some other event arrives).
		if code, b := get(t, w, "/__dev/timer/arm?ms=800"); code != 200 {
			t.Fatalf("arm: %d %s", code, b)
		}
		// The arming request must be over inside the runtime too, not only for the
		// client: wait until the runtime has no Go call in flight.
		eventually(t, 5*time.Second, func() error {
			var st runtimeStats
			getJSON(t, w, "/__dev/js/runtime", &st)
			if st.Pending != 0 {
				return fmt.Errorf("%d Go calls still in flight", st.Pending)
			}
			return nil
		})
		start := time.Now()
		c := &http.Client{Timeout: 5 * time.Second}
		res, err := c.Get(w.URL + "/__dev/timer/wait")
		if err != nil {
			t.Fatalf("wait: %v", err)
		}
		res.Body.Close()
		if took := time.Since(start); res.StatusCode != 200 || took > 2*time.Second {
			t.Fatalf("wait: %d after %v", res.StatusCode, took)
		}
	})

	t.Run("HandlerPanicIsA500AndTheRuntimeSurvives", func(t *testing.T) {
		if code, _ := get(t, w, "/__dev/panic"); code != http.StatusInternalServerError {
			t.Fatalf("panic: %d", code)
		}
		var h health
		getJSON(t, w, "/__dev/health", &h)
		if h.Instance != first.Instance {
			t.Fatal("a handler panic restarted the runtime")
		}
	})

	t.Run("NothingLeaksPerRequest", func(t *testing.T) {
		var before, after runtimeStats
		getJSON(t, w, "/__dev/js/runtime", &before)
		for range 200 {
			get(t, w, "/health")
		}
		for range 50 {
			status(t, w, "e2")
		}
		getJSON(t, w, "/__dev/js/runtime", &after)
		if after.Go.Goroutines > before.Go.Goroutines+2 {
			t.Fatalf("goroutines %d → %d", before.Go.Goroutines, after.Go.Goroutines)
		}
		// References are released when Go collects; a GC bounds them.
		get(t, w, "/__dev/stats?gc=1")
		get(t, w, "/health")
		getJSON(t, w, "/__dev/js/runtime", &after)
		if after.JSRefs > before.JSRefs+500 {
			t.Fatalf("live JS references %d → %d after GC", before.JSRefs, after.JSRefs)
		}
	})

	t.Run("ADeadRuntimeFailsFastAndIsReplaced", func(t *testing.T) {
		// A request in flight when the runtime dies fails too, instead of hanging.
		inflight := make(chan int, 1)
		go func() {
			res, err := client.Get(w.URL + "/__dev/sleep?ms=2000")
			if err != nil {
				inflight <- -1
				return
			}
			res.Body.Close()
			inflight <- res.StatusCode
		}()
		// Crash only once the request is inside the runtime (a bare sleep here raced).
		eventually(t, 10*time.Second, func() error {
			var st struct {
				Sleeping int `json:"sleeping"`
			}
			getJSON(t, w, "/__dev/stats", &st)
			if st.Sleeping < 1 {
				return fmt.Errorf("the in-flight request has not reached the runtime")
			}
			return nil
		})
		if code, b := get(t, w, "/__dev/crash"); code != http.StatusServiceUnavailable {
			t.Fatalf("crash: %d %s", code, b)
		}
		select {
		case code := <-inflight:
			if code != http.StatusServiceUnavailable {
				t.Fatalf("in-flight request: %d", code)
			}
		case <-time.After(1500 * time.Millisecond):
			t.Fatal("the in-flight request hung after the runtime died")
		}
		var h health
		getJSON(t, w, "/__dev/health", &h)
		if h.Instance == first.Instance {
			t.Fatal("no new runtime after the crash")
		}
		// Actor state lives in Durable Object storage, not in Go memory.
		if st := status(t, w, "e1"); st.Status != actors.StatusTimedOut {
			t.Fatalf("e1 after the restart: %+v", st)
		}
		if st := status(t, w, "e2"); st.Status != actors.StatusLeased {
			t.Fatalf("e2 after the restart: %+v", st)
		}
	})
}

// TestWorkerSandboxThatCannotStartFailsTheRun: with nothing at AGENT_URL every start
// of the run's sandbox fails; the run is retried, then fails SandboxStartFailed with
// the cause, and the sandbox's Durable Object answers each attempt with that cause
// instead of throwing it (which workerd logs as "Uncaught Error: Network connection
// lost." with its stack, three times per failed start: worker/src/index.js
// sandboxFailed).
func TestWorkerSandboxThatCannotStartFailsTheRun(t *testing.T) {
	dir := t.TempDir()
	closed, err := ClosedPort()
	if err != nil {
		t.Fatal(err)
	}
	if err := Migrate(t.Context(), Require(t), dir); err != nil {
		t.Fatal(err)
	}
	if err := D1Exec(t.Context(), Require(t), dir, `INSERT INTO executions (id, run, repo, ref, sha, status, input_json) VALUES `+
		`('nostart-1', 'checks', 'local/app', 'main', 'abc1234', 'queued', '{"run":"checks","repo":"local/app","ref":"main","sha":"abc1234"}')`); err != nil {
		t.Fatal(err)
	}
	w := start(t, Options{PersistDir: dir, AgentURL: closed})
	call(t, w, actors.RunAddr("nostart-1"), actors.RunStart{Exec: "nostart-1", Run: "checks", Pool: "lean", Sandbox: "s", MaxDuration: time.Hour})
	var st actors.RunStatus
	eventually(t, 90*time.Second, func() error {
		if st = status(t, w, "nostart-1"); !st.Status.Terminal() {
			return fmt.Errorf("status %s", st.Status)
		}
		return nil
	})
	if st.Failure == nil || st.Failure.Tag != "SandboxStartFailed" || !strings.Contains(st.Failure.Message, "502 sandbox unreachable") {
		t.Fatalf("run after its sandbox could not start: %+v (failure %+v)", st, st.Failure)
	}
	if logs := w.Logs(); strings.Contains(logs, "Uncaught") {
		t.Fatalf("wrangler dev logged an uncaught error:\n%s", logs)
	}
}

// TestWorkerStateSurvivesRestart stops wrangler dev and starts it again on the same
// persistence directory: the actors come back from their SQLite storage.
func TestWorkerStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	// The runs' sandboxes must start (a fake agent accepts them, and the edge finds the
	// executions it starts them for): a run whose sandbox cannot start is retried and
	// then failed (SandboxStartFailed), which is not what this test is about.
	ag := newAgent(t)
	opt := Options{PersistDir: dir, AgentURL: ag.URL, Vars: map[string]string{"HMAC_SECRET": "restart-test-secret"}}
	if err := Migrate(t.Context(), Require(t), dir); err != nil {
		t.Fatal(err)
	}
	if err := D1Exec(t.Context(), Require(t), dir, `INSERT INTO executions (id, run, repo, ref, sha, status, input_json) VALUES `+
		`('run-1', 'checks', 'local/app', 'main', 'abc1234', 'queued', '{"run":"checks","repo":"local/app","ref":"main","sha":"abc1234"}'), `+
		`('run-2', 'checks', 'local/app', 'main', 'abc1234', 'queued', '{"run":"checks","repo":"local/app","ref":"main","sha":"abc1234"}')`); err != nil {
		t.Fatal(err)
	}
	w := start(t, opt)
	call(t, w, actors.RunAddr("run-1"), actors.RunStart{Exec: "run-1", Run: "checks", Pool: "lean", Sandbox: "s", MaxDuration: time.Hour})
	eventually(t, 10*time.Second, func() error {
		if st := status(t, w, "run-1"); st.Status != actors.StatusLeased {
			return fmt.Errorf("status %s", st.Status)
		}
		return nil
	})
	w.Stop()

	w = start(t, opt)
	st := status(t, w, "run-1")
	if st.Status != actors.StatusLeased || st.Attempt != 1 {
		t.Fatalf("after restart: %+v", st)
	}
	// Recover re-sent the run's heartbeats: the lease still names r1, so r2 waits.
	// Waiting shows only as the lease actor's state, read from its Durable Object's
	// SQLite file: once the lease has r2 queued behind r1 (it grants only on a release
	// or an expiry, minutes away), r2 can only be admitted and waiting.
	call(t, w, actors.RunAddr("run-2"), actors.RunStart{Exec: "run-2", Run: "checks", Pool: "lean", Sandbox: "s", MaxDuration: time.Hour})
	eventually(t, 10*time.Second, func() error {
		l, err := storedLease(dir, "s")
		if err != nil {
			return err
		}
		if l.Holder == nil || l.Holder.Exec != "run-1" || len(l.Waiters) != 1 || l.Waiters[0].Exec != "run-2" {
			return fmt.Errorf("lease s: %+v, want r1 holding and r2 waiting", l)
		}
		return nil
	})
	if st := status(t, w, "run-2"); st.Status != actors.StatusAdmitted {
		t.Fatalf("r2 = %+v, want admitted and waiting for the lease r1 holds", st)
	}
}

// leaseState is the part of a lease actor's stored header (actors/lease) the tests read.
type leaseState struct {
	Holder *struct {
		Exec string `json:"exec"`
	} `json:"holder"`
	Waiters []struct {
		Exec string `json:"exec"`
	} `json:"waiters"`
}

// storedLease reads lease/<sandbox>'s header from the Durable Objects' SQLite files
// under a wrangler persistence directory (edge/cloudflare/durable_js.go's schema),
// read-only, while wrangler dev runs.
func storedLease(dir, sandbox string) (leaseState, error) {
	var l leaseState
	files, err := filepath.Glob(filepath.Join(dir, "v3", "do", "*LeaseActor", "*.sqlite"))
	if err != nil || len(files) == 0 {
		return l, fmt.Errorf("no lease actor storage under %s (%v)", dir, err)
	}
	for _, f := range files {
		db, err := sql.Open("sqlite", "file:"+f+"?mode=ro&_pragma=busy_timeout(2000)")
		if err != nil {
			return l, err
		}
		var header []byte
		err = db.QueryRow("SELECT header FROM flare_actor WHERE addr = ?", actors.LeaseAddr(sandbox).String()).Scan(&header)
		db.Close()
		if errors.Is(err, sql.ErrNoRows) || err != nil && strings.Contains(err.Error(), "no such table") {
			continue
		}
		if err != nil {
			return l, fmt.Errorf("%s: %w", f, err)
		}
		return l, json.Unmarshal(header, &l)
	}
	return l, fmt.Errorf("lease/%s not stored yet", sandbox)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsEffect(fx []struct{ From, Type string }, from, typ string) bool {
	for _, e := range fx {
		if e.From == from && e.Type == typ {
			return true
		}
	}
	return false
}
