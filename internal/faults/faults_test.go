// Package faults is the fault suite (issue 15): the whole local stack (edge, actors,
// SQLite, the embedded S3 store, real `flare agent` processes) with one dependency
// failing the way it fails in production — GitHub answering 500, 429 and its secondary
// rate limit, the model answering garbage, the blob store unreachable for a while and
// for longer than the log shipper's bound, SQLite's disk full (diskfull_test.go).
// Every case ends in a defined state with a clear summary, loses nothing that was
// acknowledged, and waits on nothing without a deadline.
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
	"github.com/flare-dispatch/flare-dispatch/internal/flarebuild"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// flareBin is the real CLI, built once: the stack's agents are its `flare agent`.
var flareBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flare-faults-")
	if err != nil {
		panic(err)
	}
	flareBin, err = flarebuild.Flare(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build flare:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stack starts the embedded stack with vars as its environment.
func stack(t *testing.T, vars map[string]string, o local.Options) *local.Stack {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.AgentCommand == nil {
		o.AgentCommand = []string{flareBin, "agent"}
	}
	o.Addr, o.Runs = "127.0.0.1:0", runs.Registry()
	o.Getenv = func(k string) string { return vars[k] }
	st, err := local.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

// dispatch posts a signed dispatch and returns the execution id.
func dispatch(t *testing.T, st *local.Stack, body map[string]any) string {
	t.Helper()
	status, out, raw := post(t, st, body, "")
	if status != http.StatusAccepted || out["executionId"] == nil {
		t.Fatalf("dispatch: %d %s", status, raw)
	}
	return out["executionId"].(string)
}

// post posts a signed dispatch (with an Idempotency-Key unless key is "") and returns
// the answer, whatever it is.
func post(t *testing.T, st *local.Stack, body map[string]any, key string) (int, map[string]any, string) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, st.URL+"/v1/dispatch/"+body["run"].(string), bytes.NewReader(raw))
	req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader(st.Secrets.HMACSecret, raw))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("dispatch (a hang is a failure): %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out, string(b)
}

// client bounds every request the suite makes: an answer that never comes fails.
var client = &http.Client{Timeout: time.Minute}

type view struct {
	Execution edge.Execution    `json:"execution"`
	Check     *edge.CheckReport `json:"check"`
}

// waitDone polls the execution until it is terminal and its check completed, within
// a deadline: a hang is a failure, not a stuck test.
func waitDone(t *testing.T, st *local.Stack, id string, within time.Duration) view {
	t.Helper()
	tok := edge.LogToken(edge.Config{HMACSecret: st.Secrets.HMACSecret}, id)
	var v view
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		v = view{}
		resp, err := client.Get(st.URL + "/v1/executions/" + id + "?t=" + tok)
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if actors.Status(v.Execution.Status).Terminal() && v.Check != nil && v.Check.Status == "completed" {
			return v
		}
	}
	t.Fatalf("%s not done within %s (a hang): %+v", id, within, v.Execution)
	return v
}

func logsText(t *testing.T, st *local.Stack, id string) string {
	t.Helper()
	tok := edge.LogToken(edge.Config{HMACSecret: st.Secrets.HMACSecret}, id)
	resp, err := client.Get(st.URL + "/v1/executions/" + id + "/logs?format=text&t=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func offload(repo, sha, command string) map[string]any {
	return map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/app", "sha": sha},
		"inputs": map[string]any{"repo": repo, "sha": sha, "command": command, "timeoutSec": 120}}
}

// TestGitHubFailuresAreRetriedAndNothingIsDuplicated: GitHub answers the check-run
// calls with a 500, a 429 with Retry-After and its secondary rate limit (a 403 with
// Retry-After). The run still ends green, with exactly one check-run on GitHub (a
// retried create must not make a second), completed with the final summary, and every
// retry after a Retry-After came no sooner than GitHub asked.
func TestGitHubFailuresAreRetriedAndNothingIsDuplicated(t *testing.T) {
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	repo, shas := gittest.Repo(t, 1)
	gh.AddCommitSHA("acme/app", shas[0])
	const create, update = "POST /repos/acme/app/check-runs", "PATCH /repos/acme/app/check-runs/*"
	gh.FailNext(1, create, fakegithub.ServerError(500))
	gh.FailNext(1, create, fakegithub.TooManyRequests(time.Second))
	gh.FailNext(1, update, fakegithub.SecondaryRateLimit(time.Second))
	gh.FailNext(1, update, fakegithub.ServerError(502))
	st := stack(t, map[string]string{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM),
		"GITHUB_API_URL": gh.URL()}, local.Options{})
	body := offload(repo, shas[0], "echo hello")
	body["github"] = map[string]any{"repo": "acme/app", "sha": shas[0], "installation_id": inst}
	id := dispatch(t, st, body)
	v := waitDone(t, st, id, 2*time.Minute)

	if v.Execution.Status != "success" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	crs := gh.CheckRuns("acme/app")
	if len(crs) != 1 {
		t.Fatalf("%d check-runs on GitHub, want exactly 1: %+v", len(crs), crs)
	}
	if cr := crs[0]; cr.Status != "completed" || cr.Conclusion != "success" || !strings.HasPrefix(cr.Summary, "✓ offload-test") {
		t.Fatalf("check-run %+v", cr)
	}
	if v.Execution.CheckRunID != crs[0].ID {
		t.Fatalf("executions.check_run_id = %d, want %d", v.Execution.CheckRunID, crs[0].ID)
	}
	// Every Retry-After was honoured: the call after a 429 or a 403 came ≥ 1 s later.
	calls := append(gh.CallsTo(create), gh.CallsTo(update)...)
	faulted := 0
	for i, c := range calls {
		if c.Status != http.StatusTooManyRequests && c.Status != http.StatusForbidden {
			continue
		}
		faulted++
		for _, next := range calls[i+1:] {
			if next.Method == c.Method {
				if gap := next.Time.Sub(c.Time); gap < time.Second-50*time.Millisecond {
					t.Fatalf("%s retried %s after a %d with Retry-After: 1", c.Method, gap, c.Status)
				}
				break
			}
		}
	}
	if faulted != 2 {
		t.Fatalf("%d rate-limited answers seen, want 2 (the faults did not reach the edge): %+v", faulted, calls)
	}
}

// TestModelGarbageEndsTheAgenticRunWithATypedFailure: the model answers pr-review with
// a body that is not JSON, then with a tool call whose arguments are not JSON. The run
// does not hang or succeed on nonsense: it fails with a typed failure whose check-run
// summary says what went wrong, and `flare run` exits non-zero.
func TestModelGarbageEndsTheAgenticRunWithATypedFailure(t *testing.T) {
	for _, c := range []struct {
		name    string
		reply   fakeopenai.Reply
		tag     string // the typed failure, in the live progress
		summary string // what the check-run says
	}{
		{"body not JSON", fakeopenai.Reply{RawBody: "<html>502 upstream garbage"}, "ModelCallFailed", "**A model call failed**"},
		{"tool arguments not JSON", fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report", Arguments: `{"findings": [oops`}}},
			"StructuredOutputInvalid", "**The model's structured output for `report` was invalid:**"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := gittest.Init(t)
			w.Commit("base", map[string]string{"calc/calc.go": "package calc\n\nfunc Add(a, b int) int { return a + b }\n"})
			w.Git("checkout", "-q", "-b", "feature")
			w.Commit("div", map[string]string{"calc/calc.go": "package calc\n\nfunc Div(a, b int) int { return a / b }\n"})
			f := fakeopenai.New("sk-local")
			defer f.Close()
			f.Respond(func(fakeopenai.ChatRequest) fakeopenai.Reply { return c.reply })
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, flareBin, "run", "pr-review", "--repo", w.Dir, "--base", "main", "--model", "gpt-fake", "--data", t.TempDir())
			cmd.Env = append(os.Environ(), "OPENAI_BASE_URL="+f.URL, "OPENAI_API_KEY=sk-local")
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("flare run hung:\n%s\n%s", out.String(), errb.String())
			}
			if err == nil {
				t.Fatalf("a review built on garbage succeeded:\n%s", out.String())
			}
			got := out.String()
			if !strings.Contains(got, "── check-run flare-dispatch/pr-review: failure ──") || !strings.Contains(got, c.summary) ||
				!strings.Contains(errb.String(), "✗ review") || !strings.Contains(errb.String(), c.tag) {
				t.Fatalf("want a failed check saying %q (%s):\n%s\nstderr:\n%s", c.summary, c.tag, got, errb.String())
			}
			if len(f.Requests()) == 0 {
				t.Fatal("the model was never called")
			}
		})
	}
}

// outageProxy stands between the agents and the blob store; while down it answers 503
// with S3's error body, as R2 does when it is unavailable.
type outageProxy struct {
	down   atomic.Bool
	target atomic.Pointer[url.URL]
	failed atomic.Int64 // requests refused while down
	puts   atomic.Int64 // of which log segment uploads

	mu    sync.Mutex
	tries map[string]int // refused puts per log segment key
	// refused, when set, is called with a refused segment put's key and try number
	// before the answer goes back: the agent's uploader is still waiting on it.
	refused func(key string, try int)
}

// refusedKeys is how many distinct log segments have been refused.
func (p *outageProxy) refusedKeys() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tries)
}

func (p *outageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		p.failed.Add(1)
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/logs/") {
			p.puts.Add(1)
			p.mu.Lock()
			if p.tries == nil {
				p.tries = map[string]int{}
			}
			p.tries[r.URL.Path]++
			try, hook := p.tries[r.URL.Path], p.refused
			p.mu.Unlock()
			if hook != nil {
				hook(r.URL.Path, try)
			}
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code><Message>Please reduce your request rate.</Message></Error>`)
		return
	}
	httputil.NewSingleHostReverseProxy(p.target.Load()).ServeHTTP(w, r)
}

// TestBlobStoreOutageLosesNoLogLine: the blob store is unreachable from the sandbox
// from the start of a run until 1.2 s after the first log segment it refused, while a
// command prints; when it comes back within the shipper's retries, the run
// ends green and its log holds every line, in order (lines were buffered, not
// dropped). The command waits on a marker the test writes once the outage is over, so
// the outage surely spans its output.
func TestBlobStoreOutageLosesNoLogLine(t *testing.T) {
	proxy := &outageProxy{}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	// Not isolated: under bubblewrap the sandbox has a /tmp of its own, the command
	// never saw the marker and waited out its 30 s cap instead.
	st := stack(t, nil, local.Options{AgentBlobEndpoint: srv.URL, NoIsolation: true})
	u, _ := url.Parse(st.BlobURL)
	proxy.target.Store(u)

	repo, shas := gittest.Repo(t, 1)
	marker := t.TempDir() + "/release"
	// 200 lines before the marker (shipped during the outage), 200 after.
	command := fmt.Sprintf(`i=0; while [ $i -lt 200 ]; do echo "line-$i"; i=$((i+1)); done; `+
		`n=0; while [ ! -f %s ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n+1)); done; `+
		`while [ $i -lt 400 ]; do echo "line-$i"; i=$((i+1)); done`, marker)
	proxy.down.Store(true) // from the start: the agent's first writes are refused
	id := dispatch(t, st, offload(repo, shas[0], command))
	for deadline := time.Now().Add(time.Minute); proxy.puts.Load() == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the agent never shipped a log segment")
		}
	}
	time.Sleep(1200 * time.Millisecond) // the outage itself: a duration, not synchronisation
	proxy.down.Store(false)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v := waitDone(t, st, id, 2*time.Minute)
	if v.Execution.Status != "success" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	text := logsText(t, st, id)
	last := -1
	for _, l := range strings.Split(text, "\n") {
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(l), "line-%d", &n); err != nil {
			continue
		}
		if n != last+1 {
			t.Fatalf("log line %d after %d: a line was lost or reordered (refused %d requests)\n%s", n, last, proxy.failed.Load(), text)
		}
		last = n
	}
	if last != 399 {
		t.Fatalf("log ends at line %d, want 399:\n%s", last, text)
	}
}

// eventually polls cond until it holds, failing the test (a hang) after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (a hang)", what, within)
		}
	}
}

// progress reads the number a command writes to a file after each line it prints
// (-1 before the first).
func progress(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// TestLongBlobOutageBoundsTheBufferThenMarksTheGap: the blob store is unreachable
// from the sandbox for longer than the shipper retries a segment (the agent's
// --log-give-up 3s) while the command prints 6,000 lines of ~1 KB in 60 blocks of 100.
// What must hold:
//   - while the first refused segment is still being retried (its fourth put, 1.75 s
//     of backoff into the outage, is in flight), the command is held back: it has
//     printed fewer than 30 blocks (the shipper holds the segment being retried, at
//     most logship.MaxBuffered gathered behind it, and the pipes: about 1.2-2.3 MB,
//     never the whole 6 MB). Fails with logship's bound removed (the wait in
//     appendLocked): the command prints every block into the agent's memory before
//     the retries end.
//   - past the bound the loss is visible: the log keeps every line printed before
//     and after the outage, in order, with one gap record between them saying what
//     is missing, and the run fails with StorageFull ("Storage refused a write")
//     rather than pass on a log with a hole. Fails with the gap record removed from
//     logship's ship, and with the LostError case removed from agent/sandbox's Exec
//     (the run ends green).
//
// The command waits on files the test writes and records its progress in a file
// beside them, so its sandbox is not isolated (the test reads that file).
func TestLongBlobOutageBoundsTheBufferThenMarksTheGap(t *testing.T) {
	proxy := &outageProxy{}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	st := stack(t, nil, local.Options{AgentBlobEndpoint: srv.URL, NoIsolation: true,
		AgentCommand: []string{flareBin, "agent", "--log-give-up", "3s"}})
	u, _ := url.Parse(st.BlobURL)
	proxy.target.Store(u)

	side := t.TempDir()
	down, up, prog := side+"/down", side+"/up", side+"/progress"
	const blocks, perBlock = 60, 100
	command := fmt.Sprintf(`i=0; while [ $i -lt 100 ]; do echo "before-$i"; i=$((i+1)); done; `+
		`while [ ! -f %[1]s ]; do sleep 0.05; done; `+
		`i=0; while [ $i -lt %[4]d ]; do seq -f "burst-%%g %[5]s" $((i*%[6]d)) $((i*%[6]d+%[6]d-1)); echo $i > %[3]s; i=$((i+1)); done; `+
		`while [ ! -f %[2]s ]; do sleep 0.05; done; `+
		`i=0; while [ $i -lt 100 ]; do echo "after-$i"; i=$((i+1)); done`, down, up, prog, blocks, strings.Repeat("x", 1000), perBlock)
	held := make(chan int, 1) // the command's progress while the first refused segment was retried
	proxy.refused = func(_ string, try int) {
		if try == 4 { // 1.75 s of backoff in, the last try before the 3 s give-up; the uploader waits on it
			select {
			case held <- progress(prog):
			default:
			}
		}
	}
	repo, shas := gittest.Repo(t, 1)
	id := dispatch(t, st, offload(repo, shas[0], command))
	eventually(t, time.Minute, "the lines before the outage stored", func() bool { return strings.Contains(logsText(t, st, id), "before-99") })

	proxy.down.Store(true)
	if err := os.WriteFile(down, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var n int
	select {
	case n = <-held:
	case <-time.After(time.Minute):
		t.Fatal("no segment put was retried three times during the outage")
	}
	t.Logf("the command had printed %d of %d blocks at the first segment's last refused put", n+1, blocks)
	if n >= blocks/2 {
		t.Fatalf("the command printed %d of %d blocks while the store refused the first segment: the shipper buffers without bound", n+1, blocks)
	}
	// The shipper gives up on that segment (a later one is tried), the command is let
	// go and finishes its burst; only then does the store come back.
	eventually(t, time.Minute, "the shipper to give up on a segment", func() bool { return proxy.refusedKeys() >= 2 })
	eventually(t, time.Minute, "the burst to finish once segments were given up", func() bool { return progress(prog) == blocks-1 })
	proxy.down.Store(false)
	if err := os.WriteFile(up, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	v := waitDone(t, st, id, 2*time.Minute)
	if v.Execution.Status != "failure" || !strings.Contains(v.Check.Summary, "Storage refused a write") {
		t.Fatalf("a run whose log lost segments ended %s:\n%s", v.Execution.Status, v.Check.Summary)
	}
	text := logsText(t, st, id)
	var seen []string // before-*, gap, after-* in log order (burst lines only checked for order)
	lastBurst := -1
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		var k int
		switch {
		case strings.Contains(l, "could not be stored and are missing here"):
			seen = append(seen, "gap")
		case strings.HasPrefix(l, "burst-"):
			if _, err := fmt.Sscanf(l, "burst-%d", &k); err != nil || k <= lastBurst {
				t.Fatalf("burst line %q after burst-%d: reordered or duplicated", l, lastBurst)
			}
			lastBurst = k
		case strings.HasPrefix(l, "before-") || strings.HasPrefix(l, "after-"):
			seen = append(seen, l)
		}
	}
	want := []string{}
	for i := 0; i < 100; i++ {
		want = append(want, fmt.Sprintf("before-%d", i))
	}
	want = append(want, "gap")
	for i := 0; i < 100; i++ {
		want = append(want, fmt.Sprintf("after-%d", i))
	}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("log lines around the outage (want before-0…99, one gap record, after-0…99):\n%v\n%s", seen, text)
	}
}
