package citriage_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs/citriage"
)

type counting struct {
	calls int
	args  string
}

func (c *counting) Complete(_ context.Context, r dsl.ModelRequest) (dsl.ModelResponse, error) {
	c.calls++
	return dsl.ModelResponse{ToolCalls: []dsl.ModelToolCall{{Name: "report_triage", Arguments: json.RawMessage(c.args)}}}, nil
}

func TestWindowAndReport(t *testing.T) {
	now := time.Date(2026, 12, 4, 6, 0, 0, 0, time.UTC)
	fs := citriage.InWindow([]citriage.Failure{
		{Repo: "o/r", Source: "actions", Name: "ci", At: now.Add(-2 * time.Hour), Conclusion: "failure", URL: "https://github.com/o/r/actions/runs/1"},
		{Repo: "o/r", Source: "actions", Name: "old", At: now.Add(-25 * time.Hour), Conclusion: "failure"},
		{Repo: "o/r", Source: "actions", Name: "newer", At: now.Add(-time.Hour), Conclusion: "failure"},
	}, now, 24*time.Hour)
	if len(fs) != 2 || fs[0].Name != "newer" {
		t.Fatalf("%+v", fs)
	}
	m := &counting{args: `{"summary":"Two failures, @org/oncall","items":[{"title":"Flaky <b>test</b>","area":"ci","diagnosis":"timeout","suggestedFix":"raise it"}]}`}
	tr, _, err := citriage.Ask(context.Background(), m, dsl.ModelRequest{Model: "m"}, "", fs)
	if err != nil || m.calls != 1 || len(tr.Items) != 1 {
		t.Fatalf("%+v %v", tr, err)
	}
	rep := citriage.Report("2026-12-04", tr, fs)
	if strings.Contains(rep, "@org") || strings.Contains(rep, "<b>") || !strings.Contains(rep, "[ci](https://github.com/o/r/actions/runs/1)") {
		t.Fatal(rep)
	}
	if citriage.Branch("2026-12-04") != "flare-dispatch/ci-triage-2026-12-04" || citriage.File("2026-12-04") != ".flare-dispatch/ci-triage-2026-12-04.md" {
		t.Fatal("names")
	}
	if _, _, err := citriage.Ask(context.Background(), m, dsl.ModelRequest{}, "", nil); err == nil || m.calls != 1 {
		t.Fatal("no failures must not call the model")
	}
}
