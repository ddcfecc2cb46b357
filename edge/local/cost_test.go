package local_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// TestCheckRunAndDashboardShowTheCost: a finished run's check-run ends with its cost
// next to the GitHub-hosted runner's, GET /v1/executions lists it, and the dashboard
// totals it for the repository and the month.
func TestCheckRunAndDashboardShowTheCost(t *testing.T) {
	st := startStack(t, env{"SANDBOX_INSTANCE_TYPES": "lean=standard-1"})
	repo, shas := gittest.Repo(t, 1)
	id := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "echo hi", nil), "").body["executionId"].(string)
	v := waitDone(t, st, id, 60*time.Second)
	if !strings.Contains(v.Check.Summary, "**Cost** ≈ $") || !strings.Contains(v.Check.Summary, "on Cloudflare: standard-1 × ") ||
		!strings.Contains(v.Check.Summary, "GitHub-hosted Linux runner: 1 min × $0.0080 = $0.0080") {
		t.Fatalf("check-run summary:\n%s", v.Check.Summary)
	}
	_, raw := getWith(t, st.URL+"/v1/executions?repo=local/app", map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken})
	var list struct {
		Executions []struct {
			Cost *edge.Cost `json:"cost"`
		} `json:"executions"`
	}
	if json.Unmarshal([]byte(raw), &list) != nil || len(list.Executions) != 1 {
		t.Fatalf("listing: %s", raw)
	}
	if c := list.Executions[0].Cost; c == nil || c.InstanceType != "standard-1" || c.GitHubMinutes != 1 || c.SandboxSeconds <= 0 {
		t.Fatalf("listed cost: %s", raw)
	}
	_, body := getWith(t, st.URL+"/", map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken})
	month := time.Now().UTC().Format("2006-01")
	if !strings.Contains(body, `<table id="costs">`) || !strings.Contains(body, "<tr><td>"+month+"</td><td>local/app</td><td>1</td><td>$") ||
		!strings.Contains(body, "</td><td>$0.0080</td></tr>") {
		t.Fatalf("dashboard totals:\n%s", body)
	}
}
