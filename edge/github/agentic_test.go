package github_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
)

// The run's one comment on a pull request: created, then edited in place; a person's
// comment quoting the marker is never taken for it.
func TestPRCommentIsCreatedThenUpdatedInPlace(t *testing.T) {
	e := writebackEnv(t)
	ctx := context.Background()
	pr, err := e.c.OpenPullRequest(ctx, e.inst, repo, refreshSpec(`{"v":2}`))
	if err != nil {
		t.Fatal(err)
	}
	marker := "<!-- flare-dispatch: pr-review -->"
	e.f.AddComment(repo, pr.Number, "octocat", "quoting it: "+marker)
	if _, found, err := e.c.FindComment(ctx, e.inst, repo, pr.Number, marker); err != nil || found {
		t.Fatalf("a person's comment was taken for the run's: %v %v", found, err)
	}
	c1, created, err := e.c.PutComment(ctx, e.inst, repo, pr.Number, marker, "first\n"+marker)
	if err != nil || !created || c1.ID == 0 || !strings.Contains(c1.URL, "#issuecomment-") {
		t.Fatalf("%+v %v %v", c1, created, err)
	}
	c2, created, err := e.c.PutComment(ctx, e.inst, repo, pr.Number, marker, "second\n"+marker)
	if err != nil || created || c2.ID != c1.ID {
		t.Fatalf("%+v %v %v", c2, created, err)
	}
	all := e.f.Comments(repo, pr.Number)
	if len(all) != 2 || all[1].Body != "second\n"+marker || !all[1].Bot {
		t.Fatalf("comments %+v", all)
	}
	got, found, err := e.c.FindComment(ctx, e.inst, repo, pr.Number, marker)
	if err != nil || !found || got.Body != "second\n"+marker {
		t.Fatalf("%+v %v %v", got, found, err)
	}
}

func TestFailedRunsSinceATime(t *testing.T) {
	e := setup(t)
	e.f.AddWorkflowRun(repo, fakegithub.WorkflowRun{Name: "ci", HeadBranch: "main", Status: "completed", Conclusion: "failure",
		CreatedAt: t0.Add(-2 * time.Hour), UpdatedAt: t0.Add(-time.Hour)})
	e.f.AddWorkflowRun(repo, fakegithub.WorkflowRun{Name: "old", Status: "completed", Conclusion: "failure",
		CreatedAt: t0.Add(-48 * time.Hour), UpdatedAt: t0.Add(-47 * time.Hour)})
	e.f.AddWorkflowRun(repo, fakegithub.WorkflowRun{Name: "green", Status: "completed", Conclusion: "success",
		CreatedAt: t0.Add(-time.Hour), UpdatedAt: t0.Add(-time.Hour)})
	runs, err := e.c.FailedRuns(context.Background(), e.inst, repo, t0.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Name != "ci" || runs[0].Conclusion != "failure" || !strings.Contains(runs[0].URL, "/actions/runs/") ||
		!runs[0].UpdatedAt.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("%+v", runs)
	}
}
