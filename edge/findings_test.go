package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/github"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
)

func findingsOutput(n int, extra ...dsl.Finding) json.RawMessage {
	var fs []dsl.Finding
	for i := range n {
		fs = append(fs, dsl.Finding{Path: fmt.Sprintf("src/f%d.go", i), StartLine: i + 1, Message: fmt.Sprintf("finding %d", i)})
	}
	b, _ := json.Marshal(map[string]any{"findings": append(fs, extra...), "other": 1})
	return b
}

func TestAnnotationsFromFindings(t *testing.T) {
	as, dropped := edge.Annotations(findingsOutput(0,
		dsl.Finding{Path: "./a.go", StartLine: 0, EndLine: -1, Level: "error", Title: strings.Repeat("t", 300), Message: "m"},
		dsl.Finding{Path: `dir\b.go`, StartLine: 3, EndLine: 5, Level: "failure", Message: strings.Repeat("é", 40000)},
		dsl.Finding{Path: "", StartLine: 1, Message: "no path"},
		dsl.Finding{Path: "/etc/passwd", StartLine: 1, Message: "absolute"},
		dsl.Finding{Path: "c.go", StartLine: 1, Message: "  "},
	))
	if len(as) != 2 || dropped != 3 {
		t.Fatalf("%d annotations, %d dropped: %+v", len(as), dropped, as)
	}
	a, b := as[0], as[1]
	if a.Path != "a.go" || a.StartLine != 1 || a.EndLine != 1 || a.Level != "warning" || len([]rune(a.Title)) != 255 {
		t.Fatalf("repaired %+v", a)
	}
	if b.Path != "dir/b.go" || b.EndLine != 5 || b.Level != "failure" || len(b.Message) > 64<<10 || !strings.HasSuffix(b.Message, "…") {
		t.Fatalf("cut %q… (%d bytes)", b.Message[:10], len(b.Message))
	}
	as, dropped = edge.Annotations(findingsOutput(edge.MaxAnnotations + 7))
	if len(as) != edge.MaxAnnotations || dropped != 7 {
		t.Fatalf("cap: %d, %d dropped", len(as), dropped)
	}
	for _, out := range []string{``, `null`, `[]`, `{"findings":"x"}`, `{"exitCode":0}`} {
		if as, d := edge.Annotations(json.RawMessage(out)); len(as) != 0 || d != 0 {
			t.Errorf("%q: %v %d", out, as, d)
		}
	}
}

// checksFixture is the edge reporting to a fake GitHub through the real client.
type checksFixture struct {
	*fixture
	gh   *fakegithub.Fake
	inst int64
	sha  string
}

func newChecksFixture(t *testing.T) *checksFixture {
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	sha := gh.HeadSHA("acme/app", "main")
	c, err := github.New(github.Config{AppID: app.ID, PrivateKeyPEM: app.PrivateKeyPEM, HTTP: gh.HTTPClient(), BaseURL: gh.URL(),
		Sleep: func(context.Context, time.Duration) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, edge.Config{}, func(d *edge.Deps) { d.Checks = c })
	return &checksFixture{fixture: f, gh: gh, inst: inst, sha: sha}
}

func (c *checksFixture) execution(t *testing.T, id string) {
	p, _ := json.Marshal(edge.Params{Exec: id, Run: "pr", Repo: "acme/app", SHA: c.sha, InstallationID: c.inst, Origin: "https://runs.test"})
	c.meta.CreateExecution(t.Context(), edge.Execution{ID: id, Run: "pr", Repo: "acme/app", SHA: c.sha, Input: p})
}

func (c *checksFixture) progress(id string, st actors.Status, out json.RawMessage) {
	c.srv.Perform(context.Background(), actors.RunAddr(id), actors.Progress{Exec: id, Status: st, At: time.Now(), Attempt: 1, Output: out})
}

func TestFindingsBecomeAnnotationsOnceInBatchesOfFifty(t *testing.T) {
	c := newChecksFixture(t)
	c.execution(t, "exec-1")
	c.progress("exec-1", actors.StatusRunning, nil)
	c.progress("exec-1", actors.StatusSuccess, findingsOutput(120))
	runs := c.gh.CheckRuns("acme/app")
	if len(runs) != 1 || runs[0].Conclusion != "success" || len(runs[0].Annotations) != 120 {
		t.Fatalf("check-runs %+v", runs)
	}
	patches := c.gh.CallsTo(fmt.Sprintf("PATCH /repos/acme/app/check-runs/%d", runs[0].ID))
	if len(patches) != 1+3 { // in_progress, then 50 + 50 + 20
		t.Fatalf("%d PATCHes", len(patches))
	}
	// A re-projected completion (host recovery) does not append them again.
	c.progress("exec-1", actors.StatusSuccess, findingsOutput(120))
	if cr, _ := c.gh.CheckRun("acme/app", runs[0].ID); len(cr.Annotations) != 120 || cr.Conclusion != "success" {
		t.Fatalf("after re-projection: %d annotations", len(cr.Annotations))
	}
	// The check-run id leads back to the execution (check_run rerequested).
	if got := c.kv.get(fmt.Sprintf("check-run-id:%d", runs[0].ID)); got != "exec-1" {
		t.Fatalf("check-run-id mapping %q", got)
	}
}

func TestReportingFailuresNeverFailTheRun(t *testing.T) {
	c := newChecksFixture(t)
	c.execution(t, "exec-2")
	c.gh.FailNext(100, "/repos/acme/app/check-runs/**", fakegithub.ServerError(502))
	c.gh.FailNext(100, "POST /repos/acme/app/check-runs", fakegithub.TooManyRequests(time.Second))
	c.progress("exec-2", actors.StatusRunning, nil)
	c.progress("exec-2", actors.StatusSuccess, findingsOutput(3))
	ex, _ := c.meta.Execution(t.Context(), "exec-2")
	if ex.Status != "success" {
		t.Fatalf("status %s after GitHub failed", ex.Status)
	}
	var stored edge.CheckReport
	json.Unmarshal([]byte(c.kv.get("check-run/exec-2")), &stored)
	if stored.Conclusion != "success" || len(stored.Annotations) != 3 {
		t.Fatalf("stored report %+v", stored)
	}
	if n := len(c.gh.CheckRuns("acme/app")); n != 0 {
		t.Fatalf("%d check-runs despite the faults", n)
	}
}

func FuzzAnnotationsStayWithinGitHubLimits(f *testing.F) {
	f.Add(`{"findings":[{"path":"a.go","startLine":3,"message":"m"}]}`)
	f.Add(`{"findings":[{"path":"./x\\y","startLine":-4,"endLine":-9,"level":"bogus","title":"ééé","message":" x "}]}`)
	f.Fuzz(func(t *testing.T, out string) {
		as, _ := edge.Annotations(json.RawMessage(out))
		if len(as) > edge.MaxAnnotations {
			t.Fatalf("%d annotations", len(as))
		}
		for _, a := range as {
			if a.Path == "" || strings.HasPrefix(a.Path, "/") || a.StartLine < 1 || a.EndLine < a.StartLine ||
				(a.Level != "notice" && a.Level != "warning" && a.Level != "failure") || strings.TrimSpace(a.Message) == "" ||
				len([]rune(a.Title)) > 255 || len(a.Message) > 64<<10 || len(a.RawDetails) > 64<<10 {
				t.Fatalf("annotation GitHub would refuse: %+v", a)
			}
		}
	})
}
