package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/testruns"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// The triggers end to end: webhooks, cron, admin events, the App manifest flow and
// check-run annotations, on the local stack with real agents running test runs
// (internal/testruns, compiled into the agent by -tags flaretest).

const hookSecret = "webhook-s3cret"

// startTriggerStack is startStack with the test runs registered.
func startTriggerStack(t *testing.T, vars env) *local.Stack {
	t.Helper()
	if vars == nil {
		vars = env{}
	}
	reg := runs.Registry()
	for _, r := range testruns.All() {
		reg[r.Spec().Name] = r
	}
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: vars.get,
		AgentCommand: []string{flareBin, "agent"}, Runs: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

// githubStack is a stack with App credentials on a fake GitHub and webhook mode on.
func githubStack(t *testing.T, repos ...string) (*local.Stack, *fakegithub.Fake, int64) {
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation(repos...)
	st := startTriggerStack(t, env{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM),
		"GITHUB_API_URL": gh.URL(), "GITHUB_WEBHOOK_SECRET": hookSecret})
	return st, gh, inst
}

func deliver(t *testing.T, client *http.Client, st *local.Stack, secret, event, delivery string, body []byte) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, st.URL+"/v1/webhooks/github", strings.NewReader(string(body)))
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", delivery)
	req.Header.Set("X-Hub-Signature-256", edge.SignatureHeader(secret, body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return response{}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func dispatchedIDs(r response) []string {
	var out []string
	list, _ := r.body["dispatched"].([]any)
	for _, d := range list {
		out = append(out, d.(map[string]any)["executionId"].(string))
	}
	return out
}

// healthServer is a deployed app: deploy-smoke's default paths answer 200.
func healthServer(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/", "/health", "/api/status":
			w.Write([]byte("ok"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s.URL
}

const deploySHA = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" // in deployment_status.created.4

func deploymentPayload(t *testing.T, inst int64, appURL string) []byte {
	return webhookexamples.With(webhookexamples.Load("deployment_status.created.4"),
		"deployment_status.environment_url", appURL, "installation.id", inst)
}

// deploy-smoke declares the deployment_status trigger (runs/deploysmoke.go).
const smokeID = "deploy-smoke:Codertocat_Hello-World:145988746"

func TestDeploymentStatusWebhookRunsDeploySmokeAndRerunsOnRequest(t *testing.T) {
	st, gh, inst := githubStack(t, "Codertocat/Hello-World")
	gh.AddCommitSHA("Codertocat/Hello-World", deploySHA)
	body := deploymentPayload(t, inst, healthServer(t))
	r := deliver(t, http.DefaultClient, st, hookSecret, "deployment_status", "d0b9a7c0-0001", body)
	ids := dispatchedIDs(r)
	if r.status != 202 || len(ids) != 1 || ids[0] != smokeID {
		t.Fatalf("delivery: %d %s", r.status, r.raw)
	}
	v := waitDone(t, st, ids[0], 60*time.Second)
	if v.Execution.Status != "success" || !strings.Contains(string(v.Summary), `"checked":3,"failed":0`) {
		t.Fatalf("execution %s output %s", v.Execution.Status, v.Summary)
	}
	crs := gh.CheckRuns("Codertocat/Hello-World")
	if len(crs) != 1 || crs[0].Name != "flare-dispatch/deploy-smoke" || crs[0].Conclusion != "success" || crs[0].HeadSHA != deploySHA {
		t.Fatalf("check-runs %+v", crs)
	}
	if again := deliver(t, http.DefaultClient, st, hookSecret, "deployment_status", "d0b9a7c0-0001", body); again.body["deduped"] != true {
		t.Fatalf("redelivery: %s", again.raw)
	}

	// Someone presses "Re-run" on the check: GitHub sends check_run rerequested.
	rr := webhookexamples.With(webhookexamples.Load("check_run.rerequested.1"),
		"check_run.id", crs[0].ID, "check_run.name", crs[0].Name, "check_run.head_sha", deploySHA,
		"repository.full_name", "Codertocat/Hello-World", "installation.id", inst)
	r = deliver(t, http.DefaultClient, st, hookSecret, "check_run", "d0b9a7c0-0002", rr)
	want := fmt.Sprintf("%s:rerun-%d", ids[0], crs[0].ID)
	if got := dispatchedIDs(r); len(got) != 1 || got[0] != want {
		t.Fatalf("rerun: %s", r.raw)
	}
	if v := waitDone(t, st, want, 60*time.Second); v.Execution.Status != "success" {
		t.Fatalf("rerun status %s", v.Execution.Status)
	}
	crs = gh.CheckRuns("Codertocat/Hello-World")
	if len(crs) != 2 || crs[1].Conclusion != "success" || crs[1].Name != "flare-dispatch/deploy-smoke" {
		t.Fatalf("after rerun: %+v", crs)
	}
}

func TestThousandConcurrentDeliveriesMakeOneExecution(t *testing.T) {
	st, gh, inst := githubStack(t, "Codertocat/Hello-World")
	gh.AddCommitSHA("Codertocat/Hello-World", deploySHA)
	body := deploymentPayload(t, inst, healthServer(t))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}, Timeout: 60 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	created := 0
	start := make(chan struct{})
	for i := range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Half are GitHub redelivering one delivery; half are distinct deliveries.
			delivery := "replayed-delivery"
			if i%2 == 1 {
				delivery = fmt.Sprintf("delivery-%d", i)
			}
			r := deliver(t, client, st, hookSecret, "deployment_status", delivery, body)
			mu.Lock()
			defer mu.Unlock()
			statuses[r.status]++
			if list, ok := r.body["dispatched"].([]any); ok {
				for _, d := range list {
					if d.(map[string]any)["deduped"] != true {
						created++
					}
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if statuses[202] != 1000 || created != 1 {
		t.Fatalf("statuses %v, %d deliveries created an execution", statuses, created)
	}
	var n int
	if err := st.Meta.DB.QueryRow(`SELECT COUNT(*) FROM executions`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d executions (%v)", n, err)
	}
	waitDone(t, st, smokeID, 60*time.Second)
	if crs := gh.CheckRuns("Codertocat/Hello-World"); len(crs) != 1 {
		t.Fatalf("%d check-runs", len(crs))
	}
}

func TestScheduledRunRunsEndToEnd(t *testing.T) {
	st := startTriggerStack(t, nil)
	if crons := st.Edge.Crons(); !contains(crons, testruns.Cron) {
		t.Fatalf("crons %v lack the test run's", crons)
	}
	at := time.Date(2026, 5, 1, 3, 17, 0, 0, time.UTC)
	fired := st.Edge.Scheduled(context.Background(), testruns.Cron, at)
	if len(fired) != 1 || fired[0].ExecutionID != "test-scheduled:2026-05-01" || fired[0].Skipped != "" || fired[0].Deduped {
		t.Fatalf("fired %+v", fired)
	}
	v := waitDone(t, st, "test-scheduled:2026-05-01", 60*time.Second)
	if v.Execution.Status != "success" || v.Execution.Repo != "schedule/unknown" {
		t.Fatalf("status %s repo %s", v.Execution.Status, v.Execution.Repo)
	}
	if logs := logsText(t, st, "test-scheduled:2026-05-01"); !strings.Contains(logs, "fired at 2026-05-01T03:17:00Z") {
		t.Fatalf("logs:\n%s", logs)
	}
	// The same tick again is the same execution; another cron matches nothing.
	if again := st.Edge.Scheduled(context.Background(), testruns.Cron, at); len(again) != 1 || !again[0].Deduped {
		t.Fatalf("repeat tick %+v", again)
	}
	if none := st.Edge.Scheduled(context.Background(), "0 0 1 1 *", at); len(none) != 0 {
		t.Fatalf("unknown cron fired %+v", none)
	}
}

func TestFindingsAnnotateTheCheckRun(t *testing.T) {
	st, gh, inst := githubStack(t, "acme/app")
	sha := gh.HeadSHA("acme/app", "main")
	r := dispatch(t, st, "test-findings", map[string]any{"run": "test-findings",
		"github": map[string]any{"repo": "acme/app", "sha": sha, "installation_id": inst}, "inputs": map[string]any{"count": 120}}, "")
	if r.status != 202 {
		t.Fatalf("dispatch %d %s", r.status, r.raw)
	}
	waitDone(t, st, r.body["executionId"].(string), 60*time.Second)
	crs := gh.CheckRuns("acme/app")
	if len(crs) != 1 || crs[0].Conclusion != "success" || len(crs[0].Annotations) != 120 {
		t.Fatalf("check-runs %+v", crs)
	}
	if a := crs[0].Annotations[119]; a.Path != "pkg/f119.go" || a.StartLine != 120 || a.Level != "warning" || a.Message != "finding 119" {
		t.Fatalf("annotation %+v", a)
	}
}

var (
	formRe  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	inputRe = regexp.MustCompile(`<input type="hidden" name="(manifest|state)" value="([^"]*)">`)
)

func TestAppManifestFlowThenWebhooksTeachTheInstallation(t *testing.T) {
	gh, _ := fakegithub.New(t)
	// 1. A fresh deploy: no App yet. The operator creates one for the acme organization.
	st := startTriggerStack(t, env{"GITHUB_API_URL": gh.URL()})
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := browser.Get(st.URL + "/v1/github/install/new?owner=acme")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	form := map[string]string{}
	for _, m := range inputRe.FindAllStringSubmatch(string(page), -1) {
		form[m[1]] = html.UnescapeString(m[2])
	}
	action := formRe.FindStringSubmatch(string(page))
	if action == nil || !strings.HasPrefix(html.UnescapeString(action[1]), "https://github.com/organizations/acme/settings/apps/new?state=") {
		t.Fatalf("manifest page:\n%s", page)
	}
	code, err := gh.CreateAppFromManifest([]byte(form["manifest"]), "acme") // what github.com does with the form
	if err != nil {
		t.Fatal(err)
	}
	resp, err = browser.Get(st.URL + "/v1/github/installed?code=" + code + "&state=" + url.QueryEscape(form["state"]))
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	app := gh.ManifestApps()[0]
	if resp.StatusCode != 200 || !strings.Contains(html.UnescapeString(string(page)), app.WebhookSecret) {
		t.Fatalf("installed page %d:\n%s", resp.StatusCode, page)
	}
	if app.WebhookURL != st.URL+"/v1/webhooks/github" {
		t.Fatalf("hook URL %s", app.WebhookURL)
	}
	st.Close(context.Background())

	// 2. The operator sets the secrets shown and installs the App on acme/app.
	st = startTriggerStack(t, env{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM),
		"GITHUB_WEBHOOK_SECRET": app.WebhookSecret, "GITHUB_API_URL": gh.URL()})
	inst := gh.InstallApp(app.ID, "acme/app")
	installed := webhookexamples.With(webhookexamples.Load("installation.created.1"), "installation.id", inst,
		"repositories", []any{map[string]any{"full_name": "acme/app", "name": "app"}})
	if r := deliver(t, http.DefaultClient, st, app.WebhookSecret, "installation", "inst-1", installed); r.status != 202 {
		t.Fatalf("installation webhook: %d %s", r.status, r.raw)
	}

	// 3. A dispatch that names no installation reports to the learned one.
	repo, shas := gittest.Repo(t, 1)
	gh.AddCommitSHA("acme/app", shas[0])
	body := offloadBody(repo, shas[0], "echo hello", nil)
	body["github"] = map[string]any{"repo": "acme/app", "sha": shas[0]}
	r := dispatch(t, st, "offload-test", body, "")
	if r.status != 202 {
		t.Fatalf("dispatch %d %s", r.status, r.raw)
	}
	waitDone(t, st, r.body["executionId"].(string), 60*time.Second)
	crs := gh.CheckRuns("acme/app")
	if len(crs) != 1 || crs[0].AppID != app.ID || crs[0].Conclusion != "success" {
		t.Fatalf("check-runs %+v", crs)
	}
}

func TestApprovalWaitsForTheAdminEvent(t *testing.T) {
	st := startTriggerStack(t, nil)
	admin := func(id, body string) response {
		return post(t, st.URL+"/v1/admin/events/"+id, []byte(body), map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken})
	}
	r := dispatch(t, st, "test-approval", map[string]any{"run": "test-approval",
		"github": map[string]any{"repo": "acme/app", "sha": "abc1234"}, "inputs": map[string]any{"timeoutMs": 120000}}, "approval-1")
	if r.status != 202 {
		t.Fatalf("dispatch %d %s", r.status, r.raw)
	}
	waitStatus(t, st, "approval-1", "waiting", 60*time.Second)
	if r := admin("approval-1", `{"type":"approve","payload":{"by":"ada"}}`); r.status != 202 || r.body["delivered"] != true {
		t.Fatalf("event: %d %s", r.status, r.raw)
	}
	if r := admin("approval-1", `{"type":"approve","payload":{"by":"bob"}}`); r.status != 409 {
		t.Fatalf("second decision: %d %s", r.status, r.raw)
	}
	v := waitDone(t, st, "approval-1", 60*time.Second)
	if v.Execution.Status != "success" || string(v.Summary) != `{"approved":{"by":"ada"}}` {
		t.Fatalf("status %s output %s", v.Execution.Status, v.Summary)
	}

	// Nobody decides: ApprovalTimedOut.
	dispatch(t, st, "test-approval", map[string]any{"run": "test-approval",
		"github": map[string]any{"repo": "acme/app", "sha": "abc1234"}, "inputs": map[string]any{"timeoutMs": 1500}}, "approval-2")
	v = waitDone(t, st, "approval-2", 60*time.Second)
	if v.Execution.Status != "failure" || !strings.Contains(v.Check.Summary, "approve") {
		t.Fatalf("status %s summary %s", v.Execution.Status, v.Check.Summary)
	}
}

// waitStatus polls until the execution has the status.
func waitStatus(t *testing.T, st *local.Stack, id, status string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if v := executionView(t, st, id); v.Execution.Status == status {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never %s: %+v", id, status, executionView(t, st, id).Execution)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
