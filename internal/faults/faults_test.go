// Package faults is the fault suite (issue 15): the whole local stack (edge, actors,
// SQLite, the embedded S3 store, real `flare agent` processes) with one dependency
// failing the way it fails in production — GitHub answering 500, 429 and its secondary
// rate limit, the model answering garbage, the blob store unreachable for a while.
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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/actiontest"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
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
	flareBin, err = actiontest.BuildFlare(dir)
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
	o.DataDir, o.Addr, o.AgentCommand, o.Runs = t.TempDir(), "127.0.0.1:0", []string{flareBin, "agent"}, runs.Registry()
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
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, st.URL+"/v1/dispatch/"+body["run"].(string), bytes.NewReader(raw))
	req.Header.Set("X-FlareDispatch-Signature", edge.SignatureHeader(st.Secrets.HMACSecret, raw))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &out) != nil {
		t.Fatalf("dispatch: %d %s", resp.StatusCode, b)
	}
	return out["executionId"].(string)
}

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
		resp, err := http.Get(st.URL + "/v1/executions/" + id + "?t=" + tok)
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
	resp, err := http.Get(st.URL + "/v1/executions/" + id + "/logs?format=text&t=" + tok)
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
}

func (p *outageProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		p.failed.Add(1)
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/logs/") {
			p.puts.Add(1)
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
	st := stack(t, nil, local.Options{AgentBlobEndpoint: srv.URL})
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
