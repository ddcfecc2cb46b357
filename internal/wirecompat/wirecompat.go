// Package wirecompat is the original dispatcher's wire contract as table tests, run
// against both platforms: the embedded stack (edge/local) and the Worker under
// `wrangler dev` (edge/cloudflare/workertest). A team switching from the original
// keeps its workflows: these are the requests they send.
package wirecompat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Target is a running dispatcher.
type Target struct {
	URL        string
	HMACSecret string
	AdminToken string
	// CheckRuns counts the check-runs the fake GitHub holds for a repository; nil
	// skips the check-run assertions.
	CheckRuns func(repo string) int
	// WebhookSecret and Installation let the suite teach the dispatcher an
	// installation with a signed webhook (the learned-installation case).
	WebhookSecret string
	Installation  int64
	// InstalledRepo is a repository the fake GitHub App is installed on; AddCommit
	// makes a commit known to the fake there (check-runs need a real head_sha).
	InstalledRepo string
	AddCommit     func(repo, sha string)
	// Repo and RepoSHA are a git repository the target's agents can check out (a
	// local path) and a commit in it; IdempotencyGet reads IDEMPOTENCY_KV. For
	// TestConfigKV, which also needs ConfigKey set to ConfigValue in CONFIG_KV.
	Repo, RepoSHA  string
	IdempotencyGet func(t *testing.T, key string) (string, bool)
}

// The CONFIG_KV key TestConfigKV expects, put the way an operator of the original
// does: `wrangler kv key put --binding CONFIG_KV wirecompat/WIRE_SECRET from-CONFIG_KV`.
const (
	ConfigKey   = "wirecompat/WIRE_SECRET"
	ConfigValue = "from-CONFIG_KV"
)

var client = &http.Client{Timeout: 30 * time.Second}

// Reply is an answer.
type Reply struct {
	Status int
	Body   map[string]any
	Raw    []byte
}

func (r Reply) str(k string) string { s, _ := r.Body[k].(string); return s }

func (tg Target) do(t *testing.T, method, path string, body []byte, headers map[string]string) Reply {
	t.Helper()
	req, err := http.NewRequest(method, tg.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := Reply{Status: res.StatusCode, Raw: raw}
	_ = json.Unmarshal(raw, &r.Body)
	return r
}

// Dispatch signs body as the Action does and posts it to /v1/dispatch/<run>.
func (tg Target) Dispatch(t *testing.T, run string, body []byte) Reply {
	t.Helper()
	return tg.do(t, http.MethodPost, "/v1/dispatch/"+url.PathEscape(run), body, map[string]string{
		"Content-Type": "application/json", "X-FlareDispatch-Signature": edge.SignatureHeader(tg.HMACSecret, body)})
}

// cancel stops an accepted execution so the table does not keep sandboxes busy.
func (tg Target) cancel(t *testing.T, id string) {
	t.Helper()
	r := tg.do(t, http.MethodPost, "/v1/executions/"+url.PathEscape(id)+"/cancel", nil, map[string]string{"Authorization": "Bearer " + tg.AdminToken})
	if r.Status != http.StatusAccepted && r.Status != http.StatusOK {
		t.Fatalf("cancel %s: %d %s", id, r.Status, r.Raw)
	}
}

const sha40 = "0123456789abcdef0123456789abcdef01234567"

// envelope is a dispatch of offload-test to repo@sha with extra github fields and inputs.
func envelope(run, repo, sha string, github map[string]any, inputs map[string]any) []byte {
	g := map[string]any{"repo": repo, "sha": sha}
	for k, v := range github {
		g[k] = v
	}
	in := map[string]any{"repo": "acme/app", "sha": sha40, "command": "true"}
	if run == "matrix-fanout" {
		in["shards"] = 2
	}
	for k, v := range inputs {
		if v == nil {
			delete(in, k)
		} else {
			in[k] = v
		}
	}
	b, _ := json.Marshal(map[string]any{"run": run, "github": g, "inputs": in})
	return b
}

var validID = regexp.MustCompile(`^[A-Za-z0-9:_-]{3,128}$`)

type dispatchCase struct {
	name   string
	run    string
	repo   string
	sha    string
	github map[string]any
	inputs map[string]any
	status int
	field  string // the 400's field
}

// DispatchCases are the requests of contract §2.1 that the original's workflows send
// (issue 12, "wire compatibility").
func DispatchCases() []dispatchCase {
	ot := "offload-test"
	return []dispatchCase{
		// github.installation_id: 0 or absent is "unknown" (the original Action sends 0).
		{name: "installation_id 0", run: ot, repo: "acme/inst-zero", sha: sha40, github: map[string]any{"installation_id": 0}, status: 202},
		{name: "installation_id absent", run: ot, repo: "acme/inst-absent", sha: sha40, status: 202},
		{name: "installation_id negative", run: ot, repo: "acme/inst-neg", sha: sha40, github: map[string]any{"installation_id": -1}, status: 400, field: "github.installation_id"},
		// Every valid GitHub repository name, with the default execution id.
		{name: "repo with a dot", run: ot, repo: "vercel/next.js", sha: sha40, status: 202},
		{name: "repo with underscore and dot", run: ot, repo: "a/b_c.d", sha: sha40, status: 202},
		{name: "repo b-c.d", run: ot, repo: "a/b-c.d", sha: sha40, status: 202},
		{name: "repo b_c-d", run: ot, repo: "a/b_c-d", sha: sha40, status: 202},
		{name: "repo b.c_d", run: ot, repo: "a/b.c_d", sha: sha40, status: 202},
		{name: "repo in capitals", run: ot, repo: "Acme/Repo-Name", sha: sha40, status: 202},
		{name: "repo .github", run: ot, repo: "acme/.github", sha: sha40, status: 202},
		{name: "repo ..x", run: ot, repo: "acme/..x", sha: sha40, status: 202},
		{name: "longest repo", run: ot, repo: strings.Repeat("o", 39) + "/" + strings.Repeat("r", 50) + "." + strings.Repeat("r", 49), sha: sha40, status: 202},
		{name: "repo .", run: ot, repo: "owner/.", sha: sha40, status: 400, field: "github.repo"},
		{name: "repo ..", run: ot, repo: "owner/..", sha: sha40, status: 400, field: "github.repo"},
		{name: "repo without owner", run: ot, repo: "next.js", sha: sha40, status: 400, field: "github.repo"},
		{name: "repo with a space", run: ot, repo: "a/b c", sha: sha40, status: 400, field: "github.repo"},
		// github.sha: a commit id or a ref name git accepts.
		{name: "sha 64 hex", run: ot, repo: "acme/sha64", sha: strings.Repeat("ab", 32), status: 202},
		{name: "sha as branch", run: ot, repo: "acme/sha-branch", sha: "main", status: 202},
		{name: "sha as full ref", run: ot, repo: "acme/sha-ref", sha: "refs/heads/feature/x-1.2", status: 202},
		{name: "sha as tag", run: ot, repo: "acme/sha-tag", sha: "v1.2.3", status: 202},
		{name: "sha with ..", run: ot, repo: "acme/sha-dots", sha: "a..b", status: 400, field: "github.sha"},
		{name: "sha with NUL", run: ot, repo: "acme/sha-nul", sha: "ma\x00in", status: 400, field: "github.sha"},
		{name: "sha with control", run: ot, repo: "acme/sha-ctl", sha: "ma\x1bin", status: 400, field: "github.sha"},
		{name: "sha with space", run: ot, repo: "acme/sha-space", sha: "my branch", status: 400, field: "github.sha"},
		{name: "sha ending .lock", run: ot, repo: "acme/sha-lock", sha: "refs/heads/x.lock", status: 400, field: "github.sha"},
		{name: "sha with @{", run: ot, repo: "acme/sha-at", sha: "main@{1}", status: 400, field: "github.sha"},
		{name: "sha empty", run: ot, repo: "acme/sha-empty", sha: "", status: 400, field: "github.sha"},
		// Every input the contract lists for a run; unknown fields stay 400.
		{name: "offload-test contract inputs", run: ot, repo: "acme/inputs", sha: sha40, status: 202, inputs: map[string]any{
			"image": "ghcr.io/acme/ci:1", "env": map[string]string{"A": "1"}, "secrets": []string{"TOKEN"}, "secretPrefix": "acme/", "timeoutSec": 900}},
		{name: "matrix-fanout contract inputs", run: "matrix-fanout", repo: "acme/inputs-mf", sha: sha40, status: 202, inputs: map[string]any{"shards": 3, "image": "node:20"}},
		{name: "unknown input", run: ot, repo: "acme/inputs-x", sha: sha40, status: 400, field: "inputs.noSuchInput", inputs: map[string]any{"noSuchInput": true}},
	}
}

// TestDispatch runs DispatchCases against tg: statuses, the field a 400 names, a valid
// and distinct default execution id, and a detailsUrl on every 202.
func TestDispatch(t *testing.T, tg Target) {
	ids := map[string]string{}
	for _, tc := range DispatchCases() {
		t.Run(tc.name, func(t *testing.T) {
			r := tg.Dispatch(t, tc.run, envelope(tc.run, tc.repo, tc.sha, tc.github, tc.inputs))
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Raw)
			}
			if tc.status != http.StatusAccepted {
				if got := r.str("field"); got != tc.field {
					t.Fatalf("field %q, want %q: %s", got, tc.field, r.Raw)
				}
				if strings.Contains(string(r.Raw), "Idempotency-Key") {
					t.Fatalf("a 400 names a header that was not sent: %s", r.Raw)
				}
				return
			}
			id := r.str("executionId")
			if !validID.MatchString(id) {
				t.Fatalf("default execution id %q is not valid", id)
			}
			if other, dup := ids[id]; dup {
				t.Fatalf("%s and %s got the same execution id %q", other, tc.repo+"@"+tc.sha, id)
			}
			ids[id] = tc.repo + "@" + tc.sha
			if d := r.str("detailsUrl"); !strings.HasPrefix(d, "http") {
				t.Fatalf("no detailsUrl in the 202: %s", r.Raw)
			}
			// logsUrl keeps the original's form: the Action and teams' scripts derive the
			// execution's status URL from it by dropping "/logs".
			if base, query, _ := strings.Cut(r.str("logsUrl"), "?"); !strings.HasSuffix(base, "/v1/executions/"+id+"/logs") || !strings.HasPrefix(query, "t=") {
				t.Fatalf("logsUrl %q is not <origin>/v1/executions/<id>/logs?t=<token>", r.str("logsUrl"))
			}
			tg.cancel(t, id)
		})
	}
}

// TestLearnedInstallation: a dispatch with installation_id 0 posts its check-run with
// the installation learned from a webhook for that repository, and one for a
// repository with no learned installation posts none (it still runs and is recorded).
func TestLearnedInstallation(t *testing.T, tg Target) {
	if tg.CheckRuns == nil || tg.WebhookSecret == "" || tg.InstalledRepo == "" {
		t.Fatal("TestLearnedInstallation needs CheckRuns, WebhookSecret, Installation and InstalledRepo")
	}
	hook, _ := json.Marshal(map[string]any{"action": "created", "installation": map[string]any{"id": tg.Installation},
		"repository": map[string]any{"full_name": tg.InstalledRepo}})
	r := tg.do(t, http.MethodPost, "/v1/webhooks/github", hook, map[string]string{"Content-Type": "application/json",
		"X-Hub-Signature-256": edge.SignatureHeader(tg.WebhookSecret, hook), "X-GitHub-Event": "ping-learn",
		"X-GitHub-Delivery": fmt.Sprintf("learn-%d", time.Now().UnixNano())})
	if r.Status != http.StatusAccepted {
		t.Fatalf("webhook: %d %s", r.Status, r.Raw)
	}
	before := tg.CheckRuns(tg.InstalledRepo)
	sha := fmt.Sprintf("%040x", time.Now().UnixNano())
	if tg.AddCommit != nil {
		tg.AddCommit(tg.InstalledRepo, sha)
	}
	r = tg.Dispatch(t, "offload-test", envelope("offload-test", tg.InstalledRepo, sha, map[string]any{"installation_id": 0}, nil))
	if r.Status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.Status, r.Raw)
	}
	deadline := time.Now().Add(30 * time.Second)
	for tg.CheckRuns(tg.InstalledRepo) == before {
		if time.Now().After(deadline) {
			t.Fatalf("no check-run on %s with the learned installation", tg.InstalledRepo)
		}
		time.Sleep(100 * time.Millisecond)
	}
	tg.cancel(t, r.str("executionId"))
}

// TestListExecutions: GET /v1/executions needs the admin bearer, filters by run, repo
// and status, and pages with nextBefore (contract §3).
func TestListExecutions(t *testing.T, tg Target) {
	repo := fmt.Sprintf("acme/list-%d", time.Now().UnixNano())
	var ids []string
	for i := range 3 {
		sha := strings.Repeat(fmt.Sprint(i+1), 40)
		r := tg.Dispatch(t, "offload-test", envelope("offload-test", repo, sha, nil, nil))
		if r.Status != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", r.Status, r.Raw)
		}
		ids = append(ids, r.str("executionId"))
		tg.cancel(t, r.str("executionId"))
		time.Sleep(5 * time.Millisecond) // distinct started_at (ms) for the keyset paging
	}
	if r := tg.do(t, http.MethodGet, "/v1/executions", nil, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("without the bearer: %d %s", r.Status, r.Raw)
	}
	if r := tg.do(t, http.MethodGet, "/v1/executions", nil, map[string]string{"Authorization": "Bearer wrong"}); r.Status != http.StatusUnauthorized {
		t.Fatalf("with a wrong bearer: %d %s", r.Status, r.Raw)
	}
	list := func(q string) ([]map[string]any, any) {
		t.Helper()
		r := tg.do(t, http.MethodGet, "/v1/executions?"+q, nil, map[string]string{"Authorization": "Bearer " + tg.AdminToken})
		if r.Status != http.StatusOK {
			t.Fatalf("list %s: %d %s", q, r.Status, r.Raw)
		}
		var page struct {
			Executions []map[string]any `json:"executions"`
			NextBefore any              `json:"nextBefore"`
		}
		if err := json.Unmarshal(r.Raw, &page); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(r.Raw), "input") {
			t.Fatalf("the listing shows inputs: %s", r.Raw)
		}
		return page.Executions, page.NextBefore
	}
	q := url.Values{"repo": {repo}, "run": {"offload-test"}}
	all, _ := list(q.Encode())
	if len(all) != 3 || all[0]["id"] != ids[2] || all[2]["id"] != ids[0] {
		t.Fatalf("newest first, 3 of repo %s: %v", repo, all)
	}
	for _, e := range all {
		if e["repo"] != repo || e["run"] != "offload-test" || e["logsUrl"] == nil || e["startedAt"] == nil {
			t.Fatalf("item: %v", e)
		}
	}
	q.Set("limit", "2")
	first, next := list(q.Encode())
	if len(first) != 2 || next == nil {
		t.Fatalf("page 1: %v next %v", first, next)
	}
	q.Set("before", fmt.Sprintf("%.0f", next)) // JSON numbers decode as float64
	second, next2 := list(q.Encode())
	if len(second) != 1 || second[0]["id"] != ids[0] || next2 != nil {
		t.Fatalf("page 2: %v next %v", second, next2)
	}
	if none, _ := list(url.Values{"repo": {repo}, "status": {"success"}}.Encode()); len(none) != 0 {
		t.Fatalf("status filter: %v", none)
	}
	if r := tg.do(t, http.MethodGet, "/v1/executions?limit=abc", nil, map[string]string{"Authorization": "Bearer " + tg.AdminToken}); r.Status != http.StatusBadRequest {
		t.Fatalf("bad limit: %d %s", r.Status, r.Raw)
	}
}

// TestRunSkipped: a run that skips itself (RunSkipped) ends with a neutral check-run,
// not a red one. The target must serve the test runs (internal/testruns).
func TestRunSkipped(t *testing.T, tg Target) {
	body, _ := json.Marshal(map[string]any{"run": "test-skip", "github": map[string]any{"repo": "acme/skip", "sha": sha40},
		"inputs": map[string]any{"reason": "nothing changed"}})
	r := tg.Dispatch(t, "test-skip", body)
	if r.Status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.Status, r.Raw)
	}
	id := r.str("executionId")
	deadline := time.Now().Add(60 * time.Second)
	for {
		v := tg.do(t, http.MethodGet, "/v1/executions/"+url.PathEscape(id)+"?t="+edge.LogToken(edge.Config{HMACSecret: tg.HMACSecret}, id), nil, nil)
		var view struct {
			Check *edge.CheckReport `json:"check"`
		}
		_ = json.Unmarshal(v.Raw, &view)
		if c := view.Check; c != nil && c.Status == "completed" {
			if c.Conclusion != "neutral" || c.Title != "Skipped" || !strings.Contains(c.Summary, "⊘ test-skip — skipped: nothing changed") {
				t.Fatalf("check-run of a skipped run: %+v", c)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not done: %s", id, v.Raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConfigKV: run secrets come from CONFIG_KV (`secrets` + `secretPrefix`, contract
// §5.3), and dedup lands in IDEMPOTENCY_KV: webhook deliveries (gh-delivery:<id>) and
// dispatch ids (§2.3 step 8).
func TestConfigKV(t *testing.T, tg Target) {
	body, _ := json.Marshal(map[string]any{"run": "offload-test", "github": map[string]any{"repo": "local/app", "sha": tg.RepoSHA},
		"inputs": map[string]any{"repo": tg.Repo, "sha": tg.RepoSHA, "secrets": []string{"WIRE_SECRET"}, "secretPrefix": "wirecompat/",
			"command": `test "$WIRE_SECRET" = ` + ConfigValue}})
	r := tg.Dispatch(t, "offload-test", body)
	if r.Status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.Status, r.Raw)
	}
	id := r.str("executionId")
	if v, ok := tg.IdempotencyGet(t, id); !ok || v != id {
		t.Fatalf("dispatch id %s not in IDEMPOTENCY_KV (%q %v)", id, v, ok)
	}
	if again := tg.Dispatch(t, "offload-test", body); again.Status != http.StatusAccepted || again.str("executionId") != id || again.Body["deduped"] != true {
		t.Fatalf("replay: %d %s", again.Status, again.Raw)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		v := tg.do(t, http.MethodGet, "/v1/executions/"+url.PathEscape(id)+"?t="+edge.LogToken(edge.Config{HMACSecret: tg.HMACSecret}, id), nil, nil)
		var view struct {
			Check *edge.CheckReport `json:"check"`
		}
		_ = json.Unmarshal(v.Raw, &view)
		if c := view.Check; c != nil && c.Status == "completed" {
			if c.Conclusion != "success" {
				t.Fatalf("the secret from CONFIG_KV did not reach the command: %+v", c)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not done: %s", id, v.Raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	delivery := fmt.Sprintf("wire-%d", time.Now().UnixNano())
	hook := []byte(`{"zen":"Keep it logically awesome."}`)
	if r := tg.do(t, http.MethodPost, "/v1/webhooks/github", hook, map[string]string{"X-Hub-Signature-256": edge.SignatureHeader(tg.WebhookSecret, hook),
		"X-GitHub-Event": "ping", "X-GitHub-Delivery": delivery}); r.Status != http.StatusAccepted {
		t.Fatalf("webhook: %d %s", r.Status, r.Raw)
	}
	if _, ok := tg.IdempotencyGet(t, "gh-delivery:"+delivery); !ok {
		t.Fatalf("delivery %s not recorded in IDEMPOTENCY_KV", delivery)
	}
}
