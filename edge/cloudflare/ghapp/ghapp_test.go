package ghapp_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/ghapp"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
)

// memKV is the edge's KV in memory.
type memKV struct {
	mu sync.Mutex
	m  map[string]string
}

func (k *memKV) Get(_ context.Context, key string) (string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return v, ok, nil
}

func (k *memKV) Put(_ context.Context, key, value string, _ time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]string{}
	}
	k.m[key] = value
	return nil
}

var cacheKey = []byte("0123456789abcdef0123456789abcdef")

type fixture struct {
	gh     *fakegithub.Fake
	app    fakegithub.App
	inst   int64
	kv     *memKV
	sleeps []time.Duration
}

func newFixture(t *testing.T, repos ...string) *fixture {
	gh, app := fakegithub.New(t)
	f := &fixture{gh: gh, app: app, kv: &memKV{}}
	for _, r := range repos {
		gh.AddRepo(r, fakegithub.RepoOptions{Files: map[string]string{"README.md": "hello\n", "old.txt": "old\n"}})
	}
	f.inst = gh.AddInstallation(repos...)
	return f
}

func (f *fixture) client(t *testing.T, key []byte) *ghapp.Client {
	t.Helper()
	c, err := ghapp.New(ghapp.Config{AppID: f.app.ID, PrivateKeyPEM: key, HTTP: f.gh.HTTPClient(), BaseURL: f.gh.URL(),
		KV: f.kv, CacheKey: cacheKey,
		Sleep: func(_ context.Context, d time.Duration) error { f.sleeps = append(f.sleeps, d); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var ctx = context.Background()

func TestReportCreatesTheCheckRunThenCompletesItWithAllAnnotations(t *testing.T) {
	f := newFixture(t, "acme/app")
	sha := f.gh.HeadSHA("acme/app", "main")
	c := f.client(t, f.app.PrivateKeyPEM)
	ex := edge.Execution{ID: "e1", Repo: "acme/app", SHA: sha}
	id, err := c.Report(ctx, ex, edge.CheckReport{Name: "flare-dispatch/offload-test", Status: "in_progress",
		Title: "Running", Summary: "started", DetailsURL: "https://edge.example/logs", Install: f.inst})
	if err != nil || id == 0 {
		t.Fatalf("create: %d %v", id, err)
	}
	ex.CheckRunID = id
	var as []edge.Annotation
	for i := range 120 {
		as = append(as, edge.Annotation{Path: "a.go", StartLine: i + 1, Level: "notice", Message: fmt.Sprint("finding ", i)})
	}
	long := strings.Repeat("é", 40000) // 80,000 bytes: over GitHub's limit
	if got, err := c.Report(ctx, ex, edge.CheckReport{Name: "flare-dispatch/offload-test", Status: "completed", Conclusion: "success",
		Summary: long, Annotations: as, Install: f.inst}); err != nil || got != id {
		t.Fatalf("complete: %d %v", got, err)
	}
	runs := f.gh.CheckRuns("acme/app")
	if len(runs) != 1 {
		t.Fatalf("%d check-runs", len(runs))
	}
	cr := runs[0]
	if cr.Status != "completed" || cr.Conclusion != "success" || len(cr.Annotations) != 120 || cr.HeadSHA != sha ||
		cr.Title != "Succeeded" || len(cr.Summary) > 65535 || !strings.HasSuffix(cr.Summary, "_… summary truncated to fit the check-run limit._") ||
		cr.DetailsURL != "https://edge.example/logs" || !strings.HasPrefix(cr.ExternalID, "flare-dispatch-") {
		t.Fatalf("check-run %+v", cr)
	}
	if _, err := c.Report(ctx, ex, edge.CheckReport{Status: "completed", Conclusion: "great", Install: f.inst}); err == nil {
		t.Fatal("an invalid conclusion was sent")
	}
}

func TestAnAmbiguousCreateLeavesNoDuplicate(t *testing.T) {
	f := newFixture(t, "acme/app")
	sha := f.gh.HeadSHA("acme/app", "main")
	c := f.client(t, f.app.PrivateKeyPEM)
	f.gh.FailNext(2, "POST /repos/acme/app/check-runs", fakegithub.ServerError(502))
	id, err := c.Report(ctx, edge.Execution{Repo: "acme/app", SHA: sha}, edge.CheckReport{Name: "n", Status: "in_progress", Install: f.inst})
	if err != nil {
		t.Fatal(err)
	}
	if runs := f.gh.CheckRuns("acme/app"); len(runs) != 1 || runs[0].ID != id || len(f.sleeps) != 2 {
		t.Fatalf("runs %+v after %d sleeps", runs, len(f.sleeps))
	}
}

func TestRateLimitsAreRetriedOrReturnedWithTheirWait(t *testing.T) {
	f := newFixture(t, "acme/app")
	c := f.client(t, f.app.PrivateKeyPEM)
	f.gh.FailNext(1, "GET /repos/acme/app", fakegithub.TooManyRequests(2*time.Second))
	if _, err := c.Repository(ctx, f.inst, "acme/app"); err != nil {
		t.Fatalf("after one 429: %v", err)
	}
	if len(f.sleeps) != 1 || f.sleeps[0] != 2*time.Second {
		t.Fatalf("slept %v, want [2s] (Retry-After)", f.sleeps)
	}
	f.gh.FailNext(1, "GET /repos/acme/app", fakegithub.SecondaryRateLimit(10*time.Minute))
	_, err := c.Repository(ctx, f.inst, "acme/app")
	var ge *edge.GitHubError
	if !errors.As(err, &ge) || ge.Status != 403 || ge.Reason != ghapp.ReasonRateLimited || ge.RetryAfter != 10*time.Minute {
		t.Fatalf("secondary rate limit of 10 min: %#v (%v)", ge, err)
	}
	_, err = c.Repository(ctx, f.inst, "acme/nope")
	if !errors.As(err, &ge) || ge.Status != 404 && ge.Status != 403 || ge.Reason != ghapp.ReasonOther {
		t.Fatalf("a repository outside the installation: %#v (%v)", ge, err)
	}
}

func TestTokensAreMintedOnceCachedSealedAndReplacedWhenRevoked(t *testing.T) {
	f := newFixture(t, "acme/app")
	c := f.client(t, f.app.PrivateKeyPKCS8PEM)       // PKCS#8 keys work too
	tok, exp, err := c.RepoToken(ctx, "acme/app", 0) // installation looked up by repository
	if err != nil || tok == "" || exp.Before(time.Now()) {
		t.Fatalf("token %q %v %v", tok, exp, err)
	}
	if again, _, _ := c.RepoToken(ctx, "acme/app", f.inst); again != tok || f.gh.Tokens(f.inst) != 1 {
		t.Fatalf("second call minted again (%d tokens)", f.gh.Tokens(f.inst))
	}
	for k, v := range f.kv.m {
		if strings.Contains(v, tok) || !strings.HasPrefix(k, "gh-token:") {
			t.Fatalf("KV holds %s=%s: the token in clear", k, v)
		}
	}
	// Another isolate: the token comes from the KV.
	other := f.client(t, f.app.PrivateKeyPEM)
	if got, _, err := other.RepoToken(ctx, "acme/app", f.inst); err != nil || got != tok || f.gh.Tokens(f.inst) != 1 {
		t.Fatalf("from the KV: %q %v (%d tokens)", got, err, f.gh.Tokens(f.inst))
	}
	f.gh.RevokeTokens(f.inst)
	if _, err := other.Repository(ctx, f.inst, "acme/app"); err != nil {
		t.Fatalf("after the token was revoked: %v", err)
	}
	if n := f.gh.Tokens(f.inst); n != 1 {
		t.Fatalf("%d live tokens, want the one fresh token", n)
	}
}

func TestOpenPullRequestWritesBackThroughTheGitDataAPI(t *testing.T) {
	f := newFixture(t, "acme/app")
	c := f.client(t, f.app.PrivateKeyPEM)
	spec := edge.PullRequestSpec{Branch: "flare/fixtures", CommitMessage: "refresh fixtures",
		Files: []edge.PRFile{{Path: "fixtures/a.json", Content: []byte(`{"a":1}`)}, {Path: "run.sh", Content: []byte("#!/bin/sh\n"), Executable: true},
			{Path: "old.txt", Delete: true}, {Path: "never-was.txt", Delete: true}},
		PR: &edge.PROptions{Title: "Refresh fixtures", Body: "by flare", Draft: true}}
	out, err := c.OpenPullRequest(ctx, f.inst, "acme/app", spec)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Created || !out.BranchCreated || out.Base != "main" || out.Files != 2 || out.Deletions != 1 || out.Number == 0 || out.Commit == "" {
		t.Fatalf("outcome %+v", out)
	}
	files := f.gh.Files("acme/app", "flare/fixtures")
	if files["fixtures/a.json"] != `{"a":1}` || files["README.md"] != "hello\n" || files["old.txt"] != "" || len(files) != 3 {
		t.Fatalf("branch files %v", files)
	}
	if prs := f.gh.PullRequests("acme/app"); len(prs) != 1 || !prs[0].Draft || prs[0].Head != "flare/fixtures" || prs[0].Title != "Refresh fixtures" {
		t.Fatalf("pull requests %+v", prs)
	}
	if f.gh.Files("acme/app", "main")["old.txt"] != "old\n" {
		t.Fatal("the base branch was written")
	}

	// Again with other content: the branch is force-updated, the open PR updated.
	spec.Files = []edge.PRFile{{Path: "fixtures/a.json", Content: []byte(`{"a":2}`)}}
	spec.PR.Title = "Refresh fixtures (2)"
	out2, err := c.OpenPullRequest(ctx, f.inst, "acme/app", spec)
	if err != nil || out2.Created || out2.BranchCreated || out2.Number != out.Number {
		t.Fatalf("second writeback %+v %v", out2, err)
	}
	if prs := f.gh.PullRequests("acme/app"); len(prs) != 1 || prs[0].Title != "Refresh fixtures (2)" {
		t.Fatalf("pull requests %+v", prs)
	}
	spec.KeepExisting = true
	if out3, err := c.OpenPullRequest(ctx, f.inst, "acme/app", spec); err != nil || out3.Skipped != "branch flare/fixtures exists" {
		t.Fatalf("keep existing: %+v %v", out3, err)
	}
	same := edge.PullRequestSpec{Branch: "flare/same", Files: []edge.PRFile{{Path: "README.md", Content: []byte("hello\n")}}}
	if out4, err := c.OpenPullRequest(ctx, f.inst, "acme/app", same); err != nil || out4.Skipped != "no changes against main" {
		t.Fatalf("no changes: %+v %v", out4, err)
	}

	prs, err := c.OpenPullRequests(ctx, 0, "acme/app")
	if err != nil || len(prs) != 1 || prs[0].Number != out.Number || prs[0].Head != "flare/fixtures" || prs[0].Base != "main" || !prs[0].Draft {
		t.Fatalf("open pull requests %+v %v", prs, err)
	}
	info, err := c.Repository(ctx, 0, "acme/app")
	if err != nil || info.FullName != "acme/app" || info.DefaultBranch != "main" || !info.Private {
		t.Fatalf("repository %+v %v", info, err)
	}
}

func TestConfigIsChecked(t *testing.T) {
	f := newFixture(t)
	for name, cfg := range map[string]ghapp.Config{
		"no app":    {PrivateKeyPEM: f.app.PrivateKeyPEM, HTTP: http.DefaultClient},
		"no key":    {AppID: 1, HTTP: http.DefaultClient},
		"not pem":   {AppID: 1, PrivateKeyPEM: []byte("nope"), HTTP: http.DefaultClient},
		"no client": {AppID: 1, PrivateKeyPEM: f.app.PrivateKeyPEM},
		"short key": {AppID: 1, PrivateKeyPEM: f.app.PrivateKeyPEM, HTTP: http.DefaultClient, KV: &memKV{}, CacheKey: []byte("x")},
	} {
		if _, err := ghapp.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	oneLine := strings.ReplaceAll(string(f.app.PrivateKeyPEM), "\n", `\n`)
	if _, err := ghapp.New(ghapp.Config{AppID: 1, PrivateKeyPEM: []byte(oneLine), HTTP: http.DefaultClient}); err != nil {
		t.Errorf("a key pasted on one line: %v", err)
	}
}
