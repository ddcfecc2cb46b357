// The Action's script (dispatch.sh), run as a runner runs it, against the embedded
// stack: both modes with a passing and a failing run, a wrong secret, a stopped
// endpoint and a dispatcher that answers 429/5xx.
package action_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/actiontest"
	"github.com/flare-dispatch/flare-dispatch/internal/flarebuild"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

var flareBin string

func TestMain(m *testing.M) {
	for _, tool := range []string{"bash", "curl", "openssl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			// The Action needs what ubuntu-latest has; .ci/run installs jq here.
			fmt.Fprintf(os.Stderr, "the Action's tests need %s on PATH\n", tool)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "flare-action-")
	if err != nil {
		panic(err)
	}
	if flareBin, err = flarebuild.Flare(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build flare:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proxy sits between the script and the stack: it counts requests, keeps the last
// dispatch body, and can answer the first few dispatches itself.
type proxy struct {
	*httptest.Server
	mu       sync.Mutex
	n        int
	lastBody []byte
	lastSig  string
	fault    func(n int, w http.ResponseWriter) bool // true: answered, do not forward
}

func newProxy(t *testing.T, target string) *proxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &proxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/dispatch/") {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			p.mu.Lock()
			p.n++
			n := p.n
			p.lastBody, p.lastSig = body, r.Header.Get("X-FlareDispatch-Signature")
			fault := p.fault
			p.mu.Unlock()
			if fault != nil && fault(n, w) {
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) dispatches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

type fixture struct {
	st     *local.Stack
	px     *proxy
	repo   string
	sha    string
	runner actiontest.Runner
}

func setup(t *testing.T) *fixture {
	st := actiontest.Stack(t, flareBin, nil)
	repo, shas := gittest.Repo(t, 1)
	return &fixture{st: st, px: newProxy(t, st.URL), repo: repo, sha: shas[0],
		runner: actiontest.Runner{Repository: "acme/app", SHA: shas[0], Ref: "refs/heads/main", Event: "push"}}
}

func (f *fixture) inputs(mode, command string) map[string]string {
	in, _ := json.Marshal(map[string]any{"repo": f.repo, "sha": f.sha, "command": command})
	return map[string]string{"run": "offload-test", "endpoint": f.px.URL + "/", "hmac-secret": f.st.Secrets.HMACSecret,
		"inputs": string(in), "mode": mode}
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Fatalf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

func TestActionFireAndForgetReturnsTheExecutionOnceAccepted(t *testing.T) {
	f := setup(t)
	res := f.runner.Run(t, f.inputs("fire-and-forget", "true"))
	if res.Code != 0 {
		t.Fatalf("exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	want := edge.SemanticID("offload-test", "acme/app", f.sha)
	if res.Outputs["execution-id"] != want {
		t.Fatalf("execution-id %q, want %q (outputs %v)", res.Outputs["execution-id"], want, res.Outputs)
	}
	logs := res.Outputs["logs-url"]
	token := logs[strings.Index(logs, "t=")+2:]
	mustContain(t, "stdout", res.Stdout, "::add-mask::"+f.st.Secrets.HMACSecret, "::add-mask::"+token, "Accepted: execution "+want)
	if _, ok := res.Outputs["conclusion"]; ok {
		t.Fatalf("fire-and-forget set conclusion: %v", res.Outputs)
	}
	// The signature covers exactly the bytes posted (contract §2.2), and the envelope
	// carries the runner's target.
	if !edge.VerifySignature(f.st.Secrets.HMACSecret, f.px.lastBody, f.px.lastSig) {
		t.Fatalf("signature does not cover the posted bytes")
	}
	var body edge.DispatchBody
	if err := json.Unmarshal(f.px.lastBody, &body); err != nil {
		t.Fatal(err)
	}
	if body.GitHub.Repo != "acme/app" || body.GitHub.SHA != f.sha || body.GitHub.Ref != "refs/heads/main" || body.GitHub.Actor != "octocat" ||
		body.GitHub.InstallationID != nil || !strings.Contains(string(body.Trigger), `"workflow_run_id":4242`) {
		t.Fatalf("envelope: %s", f.px.lastBody)
	}
}

func TestActionSendsThePullRequestHeadCommit(t *testing.T) {
	f := setup(t)
	r := f.runner
	r.Event, r.SHA, r.Ref, r.HeadRef = "pull_request", strings.Repeat("e", 40), "refs/pull/9/merge", "feature/x"
	r.Payload = fmt.Sprintf(`{"pull_request":{"number":9,"head":{"sha":%q}}}`, f.sha)
	in := f.inputs("fire-and-forget", "true")
	in["installation-id"] = "77"
	if res := r.Run(t, in); res.Code != 0 {
		t.Fatalf("exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	var body edge.DispatchBody
	_ = json.Unmarshal(f.px.lastBody, &body)
	if body.GitHub.SHA != f.sha || body.GitHub.PRNumber != 9 || body.GitHub.Ref != "refs/heads/feature/x" ||
		body.GitHub.InstallationID == nil || *body.GitHub.InstallationID != 77 {
		t.Fatalf("pull_request envelope: %s", f.px.lastBody)
	}
}

func TestActionAwaitPassesOnSuccessWithOutputsAndSummary(t *testing.T) {
	f := setup(t)
	in := f.inputs("await", "echo hello; sleep 0.5")
	in["check-name"] = "unit tests"
	res := f.runner.Run(t, in)
	if res.Code != 0 {
		t.Fatalf("exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res.Outputs["conclusion"] != "success" || res.Outputs["status"] != "success" || res.Outputs["check-run-url"] == "" {
		t.Fatalf("outputs %v", res.Outputs)
	}
	mustContain(t, "stdout", res.Stdout, "done: success", "concluded success.")
	mustContain(t, "job summary", res.Summary, "### ✓ flare-dispatch/offload-test (unit tests): success",
		"✓ offload-test — execution succeeded.", res.Outputs["execution-id"], res.Outputs["logs-url"], `"exitCode": 0`)
}

func TestActionAwaitFailsTheStepWhenTheRunFails(t *testing.T) {
	f := setup(t)
	res := f.runner.Run(t, f.inputs("await", "echo broken >&2; exit 3"))
	if res.Code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res.Outputs["conclusion"] != "failure" || res.Outputs["status"] != "failure" {
		t.Fatalf("outputs %v", res.Outputs)
	}
	mustContain(t, "stdout", res.Stdout, "done: failure", "::error title=flare-dispatch%3A failure::flare-dispatch/offload-test concluded failure")
	mustContain(t, "job summary", res.Summary, "### ✗ flare-dispatch/offload-test: failure", "exit code 3", "broken")
}

func TestActionAwaitSaysSoWhenTheTimeoutIsHit(t *testing.T) {
	f := setup(t)
	in := f.inputs("await", "sleep 60")
	in["timeout-minutes"] = "0.03" // 1.8 s
	res := f.runner.Run(t, in)
	if res.Code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	mustContain(t, "stdout", res.Stdout, "::error title=flare-dispatch%3A timeout::timed out after 0.03 minute(s) (timeout-minutes) waiting for execution",
		"it keeps running")
	if res.Outputs["execution-id"] == "" || res.Outputs["conclusion"] != "" {
		t.Fatalf("outputs %v", res.Outputs)
	}
}

func TestActionWrongSecretPrintsBothFingerprintsAndDoesNotRetry(t *testing.T) {
	f := setup(t)
	in := f.inputs("await", "true")
	in["hmac-secret"] = f.st.Secrets.HMACSecret + "\n"
	res := f.runner.Run(t, in)
	if res.Code != 1 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stdout)
	}
	local, remote := edge.Fingerprint(in["hmac-secret"]), edge.Fingerprint(f.st.Secrets.HMACSecret)
	mustContain(t, "stdout", res.Stdout, "local secret fingerprint:      "+local, "dispatcher secret fingerprint: "+remote,
		"::error title=flare-dispatch%3A unauthorized::", "trailing newline")
	if n := f.px.dispatches(); n != 1 {
		t.Fatalf("401 was sent %d times, want 1 (never retried)", n)
	}
}

func TestActionRefusalsAreAnnotatedWithTheFieldAndNotRetried(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct {
		name   string
		change func(map[string]string)
		want   string
	}{
		{"400 inputs", func(in map[string]string) { in["inputs"] = `{"repo":"/nowhere"}` },
			"::error title=flare-dispatch%3A inputs.sha::dispatch refused (HTTP 400 invalid_inputs)"},
		{"404 run", func(in map[string]string) { in["run"] = "no-such-run" },
			`::error title=flare-dispatch%3A run_not_found::dispatch refused (HTTP 404 run_not_found): unknown run "no-such-run"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.px.dispatches()
			in := f.inputs("fire-and-forget", "true")
			tc.change(in)
			res := f.runner.Run(t, in)
			if res.Code != 1 {
				t.Fatalf("exit %d\n%s", res.Code, res.Stdout)
			}
			mustContain(t, "stdout", res.Stdout, tc.want)
			if n := f.px.dispatches() - before; n != 1 {
				t.Fatalf("sent %d times, want 1", n)
			}
		})
	}
}

func TestActionRejectsBadInputsBeforeAnyRequest(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct{ input, value, want string }{
		{"mode", "wait", `input mode: "wait" must be fire-and-forget or await`},
		{"endpoint", "ftp://x", "is not an http(s) URL"},
		{"inputs", "[1]", "input inputs: not a JSON object"},
		{"installation-id", "-1", "is not a non-negative integer"},
		{"timeout-minutes", "0", "is not a positive number"},
		{"idempotency-key", "a b", "input idempotency-key"},
		{"hmac-secret", "", "input hmac-secret is empty"},
	} {
		in := f.inputs("fire-and-forget", "true")
		in[tc.input] = tc.value
		res := f.runner.Run(t, in)
		if res.Code != 1 || !strings.Contains(res.Stdout, "::error ") || !strings.Contains(res.Stdout, tc.want) {
			t.Fatalf("%s=%q: exit %d\n%s", tc.input, tc.value, res.Code, res.Stdout)
		}
	}
	if n := f.px.dispatches(); n != 0 {
		t.Fatalf("bad inputs reached the network %d times", n)
	}
}

func TestActionRetriesTransientAnswersHonouringRetryAfter(t *testing.T) {
	f := setup(t)
	f.px.fault = func(n int, w http.ResponseWriter) bool {
		switch n {
		case 1:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return true
		case 2:
			w.WriteHeader(http.StatusBadGateway)
			return true
		}
		return false
	}
	res := f.runner.Run(t, f.inputs("fire-and-forget", "true"))
	if res.Code != 0 || f.px.dispatches() != 3 {
		t.Fatalf("exit %d after %d requests\n%s", res.Code, f.px.dispatches(), res.Stdout)
	}
	mustContain(t, "stdout", res.Stdout, "attempt 1 of 3: HTTP 429; retrying in 1s", "attempt 2 of 3: HTTP 502; retrying in 0s", "Accepted")
}

func TestActionGivesUpOnAStoppedEndpointAfterThreeAttempts(t *testing.T) {
	f := setup(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stopped := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there any more
	in := f.inputs("fire-and-forget", "true")
	in["endpoint"] = stopped
	res := f.runner.Run(t, in)
	if res.Code != 1 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stdout)
	}
	mustContain(t, "stdout", res.Stdout, "attempt 1 of 3: no answer", "attempt 2 of 3: no answer",
		"::error title=flare-dispatch::the dispatcher at "+stopped+" did not answer after 3 attempts")
}

func TestActionEscapesServerTextInWorkflowCommands(t *testing.T) {
	f := setup(t)
	f.px.fault = func(n int, w http.ResponseWriter) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_body","message":"bad\n::set-env name=X::1 100%","field":"a,b:c"}`))
		return true
	}
	res := f.runner.Run(t, f.inputs("fire-and-forget", "true"))
	if res.Code != 1 {
		t.Fatalf("exit %d\n%s", res.Code, res.Stdout)
	}
	for _, line := range strings.Split(res.Stdout, "\n") {
		if strings.HasPrefix(line, "::set-env") {
			t.Fatalf("server text injected a workflow command:\n%s", res.Stdout)
		}
	}
	mustContain(t, "stdout", res.Stdout, "::error title=flare-dispatch%3A a%2Cb%3Ac::", "bad%0A::set-env name=X::1 100%25")
}
