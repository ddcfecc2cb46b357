package runs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	agentsandbox "github.com/flare-dispatch/flare-dispatch/agent/sandbox"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
	"github.com/flare-dispatch/flare-dispatch/edge/model"
	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
	"github.com/flare-dispatch/flare-dispatch/runs"
	"github.com/flare-dispatch/flare-dispatch/runs/prreview"
)

// The agentic runs end to end below the edge: a real git repository and the agent's
// real sandbox, the real model gateway against the fake OpenAI-compatible server, and
// in-memory GitHub capabilities (the edge's side is tested in edge/).

// comments is a pull request's comments, as the edge keeps them for a run.
type comments struct {
	mu      sync.Mutex
	bodies  map[string]string
	creates int
	updates int
}

func (c *comments) FindComment(_ context.Context, repo string, pr int, marker string) (string, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.bodies[fmt.Sprint(repo, "#", pr)]
	return b, ok && strings.Contains(b, marker), nil
}

func (c *comments) PutComment(_ context.Context, repo string, pr int, marker, body string) (dsl.CommentResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bodies == nil {
		c.bodies = map[string]string{}
	}
	k := fmt.Sprint(repo, "#", pr)
	_, had := c.bodies[k]
	c.bodies[k] = body
	if had {
		c.updates++
	} else {
		c.creates++
	}
	return dsl.CommentResult{ID: 1, URL: "https://github.com/" + repo + "/pull/" + fmt.Sprint(pr) + "#issuecomment-1", Created: !had}, nil
}

func gatewayFor(t *testing.T, f *fakeopenai.Server) dsl.ModelGateway {
	t.Helper()
	def, backends := model.Backends(model.Env{OpenAIBaseURL: f.URL, OpenAIKey: "k", OpenAIModel: "gpt-fake"})
	return model.DSL{G: model.New(http.DefaultClient, def, backends, nil)}
}

func agentSandbox(t *testing.T) *agentsandbox.Sandbox {
	t.Helper()
	sb, err := agentsandbox.New(agentsandbox.Config{Workspace: t.TempDir(), Local: true})
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

func runCtx(t *testing.T, run string, sb dsl.Sandbox, cfg dsltest.Config, m dsl.ModelGateway) *dsl.Ctx {
	return &dsl.Ctx{Context: context.Background(), Exec: run + ":e", Attempt: 1, Run: run, Journal: dsltest.NewJournal(),
		Sandbox: sb, Config: cfg, Model: m, IO: fixedIO{time.Date(2026, 12, 4, 6, 0, 0, 0, time.UTC)}}
}

type fixedIO struct{ now time.Time }

func (f fixedIO) Now() time.Time     { return f.now }
func (fixedIO) NewID() string        { return "id" }
func (fixedIO) Getenv(string) string { return "" }
func (fixedIO) PriorExecution(context.Context, string) (dsl.PriorExecution, bool, error) {
	return dsl.PriorExecution{}, false, nil
}

func execRun(t *testing.T, c *dsl.Ctx, inputs any) (json.RawMessage, error) {
	t.Helper()
	run := runs.Registry()[c.Run]
	raw, _ := json.Marshal(inputs)
	norm, err := run.DecodeInputs(raw)
	if err != nil {
		t.Fatal(err)
	}
	return run.Execute(c, norm)
}

const appV1 = "package app\n\nfunc Add(a, b int) int {\n\treturn a + b\n}\n\nfunc Sub(a, b int) int {\n\treturn a - b\n}\n"

func TestPRReviewKeepsOneCommentAcrossPushes(t *testing.T) {
	w := gittest.Init(t)
	base := w.Commit("base", map[string]string{"app/app.go": appV1})
	w.Git("checkout", "-q", "-b", "feature")
	head1 := w.Commit("div", map[string]string{"app/app.go": appV1 + "\nfunc Div(a, b int) int {\n\treturn a / b\n}\n",
		"yarn.lock": "# lock\n"})

	f := fakeopenai.New("k")
	defer f.Close()
	var calls sync.Map
	f.Respond(func(r fakeopenai.ChatRequest) fakeopenai.Reply {
		calls.Store(r.Messages[0].Content, true)
		if strings.Contains(r.Prompt(), "return a / b\n") && !strings.Contains(r.Prompt(), "if b == 0") {
			return fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report",
				Arguments: `{"findings":[{"level":"failure","title":"Division by zero","message":"Div panics when b is 0.","path":"app/app.go","startLine":12}]}`}}}
		}
		return fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report", Arguments: `{"findings":[]}`}}}
	})
	cm := &comments{}
	c := runCtx(t, "pr-review", agentSandbox(t), dsltest.Config{}, gatewayFor(t, f))
	c.Comments = cm
	raw, err := execRun(t, c, runs.PRReviewInputs{Repo: w.Dir, SHA: head1, BaseSHA: base, PR: 7})
	if err != nil {
		t.Fatal(err)
	}
	var out runs.PRReviewOutput
	_ = json.Unmarshal(raw, &out)
	if out.Verdict != prreview.RequestChanges || out.Tier != prreview.TierTrivial || len(out.Agents) != 1 || len(out.Findings) != 1 ||
		out.Findings[0].Path != "app/app.go" || out.InputTokens == 0 {
		t.Fatalf("%+v", out)
	}
	if strings.Contains(f.Requests()[0].Body.Prompt(), "# lock") {
		t.Fatal("the lockfile reached the model")
	}
	if cm.creates != 1 || !strings.Contains(cm.bodies[w.Dir+"#7"], "Division by zero") {
		t.Fatalf("comments %+v", cm)
	}

	// The next push guards the division: the finding is resolved in the same comment.
	head2 := w.Commit("guard", map[string]string{"app/app.go": appV1 + "\nfunc Div(a, b int) int {\n\tif b == 0 {\n\t\treturn 0\n\t}\n\treturn a / b\n}\n"})
	c2 := runCtx(t, "pr-review", agentSandbox(t), dsltest.Config{}, gatewayFor(t, f))
	c2.Comments = cm
	raw, err = execRun(t, c2, runs.PRReviewInputs{Repo: w.Dir, SHA: head2, BaseSHA: base, PR: 7})
	if err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(raw, &out)
	body := cm.bodies[w.Dir+"#7"]
	if cm.creates != 1 || cm.updates != 1 || out.Verdict != prreview.Approve || out.Resolved != 1 ||
		!strings.Contains(body, "~~Division by zero~~") || !strings.Contains(body, "1 resolved · 0 still open · 0 new") {
		t.Fatalf("creates %d updates %d out %+v\n%s", cm.creates, cm.updates, out, body)
	}
}

// Contract §12 row 29 and the issue: an unset model key for the configured backend
// leaves a failure comment naming the key and fails the run (a red check), without a
// model call.
func TestPRReviewUnsetModelKeyFailsWithAComment(t *testing.T) {
	w := gittest.Init(t)
	base := w.Commit("base", map[string]string{"a.go": "package a\n"})
	head := w.Commit("change", map[string]string{"a.go": "package a\n\nvar X = 1\n"})
	f := fakeopenai.New("k")
	defer f.Close()
	cm := &comments{}
	c := runCtx(t, "pr-review", agentSandbox(t), dsltest.Config{"pr-review.backend": "anthropic"}, gatewayFor(t, f))
	c.Comments = cm
	_, err := execRun(t, c, runs.PRReviewInputs{Repo: w.Dir, SHA: head, BaseSHA: base, PR: 3})
	var bu *dsl.BackendUnconfigured
	if !errors.As(err, &bu) || bu.Missing[0] != "pr-review.anthropic.model" {
		t.Fatalf("%v", err)
	}
	body := cm.bodies[w.Dir+"#3"]
	if !strings.Contains(body, "pr-review could not complete") || !strings.Contains(body, "pr-review.anthropic.model") ||
		!strings.HasSuffix(body, prreview.Marker) {
		t.Fatal(body)
	}
	if len(f.Requests()) != 0 {
		t.Fatal("a model was called")
	}
	if md := dsl.Markdown(dsl.AsFailure(err)); !strings.Contains(md, "pr-review.anthropic.model") {
		t.Fatalf("check summary: %s", md)
	}
}

// Contract §12 row 10: the pr-review gates, on GitHub's own payloads.
func TestPRReviewGates(t *testing.T) {
	trig := runs.PRReview.Spec().Triggers[0]
	event := func(action string, edit func(pr map[string]any, root map[string]any)) *dsl.WebhookEvent {
		var root map[string]any
		_ = json.Unmarshal(webhookexamples.Load("pull_request.opened.1"), &root)
		root["action"] = action
		pr := root["pull_request"].(map[string]any)
		if edit != nil {
			edit(pr, root)
		}
		b, _ := json.Marshal(root)
		e, err := dsl.ParseWebhookEvent("pull_request", "d", b)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	label := func(names ...string) []any {
		var l []any
		for _, n := range names {
			l = append(l, map[string]any{"name": n})
		}
		return l
	}
	cases := []struct {
		name string
		e    *dsl.WebhookEvent
		want bool
	}{
		{"opened", event("opened", nil), true},
		{"draft", event("opened", func(pr, _ map[string]any) { pr["draft"] = true }), false},
		{"draft asking for review", event("opened", func(pr, _ map[string]any) { pr["draft"] = true; pr["labels"] = label("request-ai-review") }), true},
		{"skip label", event("synchronize", func(pr, _ map[string]any) { pr["labels"] = label("skip-ai-review") }), false},
		{"bot author", event("opened", func(pr, _ map[string]any) { pr["user"].(map[string]any)["login"] = "dependabot[bot]" }), false},
		{"other label added", event("labeled", func(pr, root map[string]any) { root["label"] = map[string]any{"name": "bug"} }), false},
		{"review label added", event("labeled", func(pr, root map[string]any) {
			pr["draft"] = true
			pr["labels"] = label("request-ai-review")
			root["label"] = map[string]any{"name": "request-ai-review"}
		}), true},
	}
	for _, c := range cases {
		if !trig.Matches(c.e) {
			t.Fatalf("%s: trigger does not match", c.name)
		}
		if got := trig.Gate(c.e); got != c.want {
			t.Errorf("%s: gate %v, want %v", c.name, got, c.want)
		}
	}
	e := event("opened", nil)
	if id := trig.IdempotencyKey(e); id != "pr-review:Codertocat_Hello-World:ec26c3e57ca3" {
		t.Fatalf("id %s", id)
	}
	in := trig.Inputs(e).(runs.PRReviewInputs)
	if in.PR != 2 || in.BaseSHA != "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" {
		t.Fatalf("%+v", in)
	}
	raw, _ := json.Marshal(in)
	if scope := runs.PRReview.Spec().Cooldown.Scope(raw); scope != "pr-2" {
		t.Fatalf("cooldown scope %q", scope)
	}
}

// github is the report runs' GitHub: failed runs to read and draft pull requests by
// branch (a second open for a branch updates the first).
type github struct {
	mu     sync.Mutex
	failed map[string][]dsl.WorkflowRun
	prs    map[string]dsl.DraftPullRequest // by repo + branch
	opens  int
}

func (g *github) FailedRuns(_ context.Context, repo string, since time.Time) ([]dsl.WorkflowRun, error) {
	var out []dsl.WorkflowRun
	for _, r := range g.failed[repo] {
		if !r.UpdatedAt.Before(since) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (g *github) Repository(context.Context, string) (dsl.Repository, error) {
	return dsl.Repository{}, nil
}
func (g *github) OpenPullRequests(context.Context, string) ([]dsl.PullRequest, error) {
	return nil, nil
}
func (g *github) OpenDraftPullRequest(_ context.Context, pr dsl.DraftPullRequest) (dsl.PullRequestResult, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.opens++
	if g.prs == nil {
		g.prs = map[string]dsl.DraftPullRequest{}
	}
	k := pr.Repo + "@" + pr.HeadBranch
	_, had := g.prs[k]
	g.prs[k] = pr
	return dsl.PullRequestResult{Number: 41, Created: !had, Branch: pr.HeadBranch, Files: len(pr.Files)}, nil
}

// Contract §12 row 27 for ci-triage-pr: no failures ⇒ no model call and no pull
// request; failures ⇒ a draft pull request on the dated branch; a rerun the same day
// updates it.
func TestCITriageOpensThenUpdatesTheDaysPR(t *testing.T) {
	f := fakeopenai.New("k")
	defer f.Close()
	f.Respond(func(fakeopenai.ChatRequest) fakeopenai.Reply {
		return fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "report_triage",
			Arguments: `{"summary":"One flaky test.","items":[{"title":"TestX times out","area":"ci","diagnosis":"slow runner","suggestedFix":"raise the timeout"}]}`}}}
	})
	gh := &github{failed: map[string][]dsl.WorkflowRun{}}
	cfg := dsltest.Config{"ci-triage.repos": "acme/web, acme/api"}
	fired := time.Date(2026, 12, 4, 6, 0, 0, 0, time.UTC)
	run := func() runs.CITriageOutput {
		c := runCtx(t, "ci-triage-pr", dsltest.SandboxBase{}, cfg, gatewayFor(t, f))
		c.GitHubAPI, c.CI = gh, gh
		raw, err := execRun(t, c, runs.ReportRunInputs{FiredAt: fired})
		if err != nil {
			t.Fatal(err)
		}
		var out runs.CITriageOutput
		_ = json.Unmarshal(raw, &out)
		return out
	}
	gh.failed["acme/web"] = []dsl.WorkflowRun{{Name: "ci", Conclusion: "failure", UpdatedAt: fired.Add(-30 * time.Hour)}} // outside the window
	if out := run(); out.PROpened || out.ActionsFailures != 0 || len(f.Requests()) != 0 || gh.opens != 0 {
		t.Fatalf("quiet day: %+v, %d model calls, %d opens", out, len(f.Requests()), gh.opens)
	}
	gh.failed["acme/api"] = []dsl.WorkflowRun{{Name: "ci", Branch: "main", Conclusion: "failure", URL: "https://github.com/acme/api/actions/runs/9",
		UpdatedAt: fired.Add(-2 * time.Hour)}}
	out := run()
	pr := gh.prs["acme/web@flare-dispatch/ci-triage-2026-12-04"]
	if !out.PROpened || out.ActionsFailures != 1 || len(f.Requests()) != 1 || pr.Title != "chore(ci): triage 2026-12-04 CI failures" ||
		len(pr.Files) != 1 || pr.Files[0].Path != ".flare-dispatch/ci-triage-2026-12-04.md" || !strings.Contains(pr.Body, "<!-- flare-dispatch: ci-triage-pr -->") {
		t.Fatalf("%+v %+v", out, pr)
	}
	if out := run(); !out.PRUpdated || out.PROpened || len(gh.prs) != 1 {
		t.Fatalf("same-day rerun: %+v (%d prs)", out, len(gh.prs))
	}
}

func TestSpecDriftProposesEditsOnlyWhenSpecsDrift(t *testing.T) {
	w := gittest.Init(t)
	w.Commit("specs", map[string]string{"specs/api.md": "# API\n\nGET /health\n", "main.go": "package main\n"})
	f := fakeopenai.New("k")
	defer f.Close()
	drift := true
	f.Respond(func(r fakeopenai.ChatRequest) fakeopenai.Reply {
		args := `{"summary":"in sync","edits":[]}`
		if drift && strings.Contains(r.Prompt(), "===FILE specs/api.md===") {
			args = `{"summary":"The API gained /metrics.","edits":[{"path":"specs/api.md","newContent":"# API\n\nGET /health\nGET /metrics\n","rationale":"shipped in main.go"},{"path":"main.go","newContent":"x","rationale":"no"}]}`
		}
		return fakeopenai.Reply{ToolCalls: []fakeopenai.ToolCall{{Name: "propose_spec_edits", Arguments: args}}}
	})
	gh := &github{}
	run := func() runs.SpecDriftOutput {
		c := runCtx(t, "spec-drift-pr", agentSandbox(t), dsltest.Config{"spec-drift.repos": w.Dir, "spec-drift.base": w.Git("rev-parse", "HEAD")}, gatewayFor(t, f))
		c.GitHubAPI = gh
		raw, err := execRun(t, c, runs.ReportRunInputs{FiredAt: time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		var out runs.SpecDriftOutput
		_ = json.Unmarshal(raw, &out)
		return out
	}
	out := run()
	pr := gh.prs[w.Dir+"@flare-dispatch/spec-drift-2026-12-04"]
	if out.PRsOpened != 1 || len(pr.Files) != 1 || pr.Files[0].Path != "specs/api.md" || pr.Title != "docs(specs): reconcile spec drift (2026-12-04)" {
		t.Fatalf("%+v %+v", out, pr)
	}
	if out := run(); out.PRsUpdated != 1 || len(gh.prs) != 1 {
		t.Fatalf("same-day rerun %+v", out)
	}
	drift = false
	opens := gh.opens
	if out := run(); out.ReposClean != 1 || gh.opens != opens {
		t.Fatalf("no drift: %+v", out)
	}
}
