package runs_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

func runOnce(t *testing.T, run dsl.Run, inputs string, with func(c *dsl.Ctx)) (json.RawMessage, error) {
	t.Helper()
	norm, err := run.DecodeInputs(json.RawMessage(inputs))
	if err != nil {
		t.Fatal(err)
	}
	c := &dsl.Ctx{Context: context.Background(), Exec: "mf", Attempt: 1, Run: run.Spec().Name}
	with(c)
	return run.Execute(c, norm)
}

func TestMatrixFanoutShardsAreChildOffloadTests(t *testing.T) {
	j, kids, sus := dsltest.NewJournal(), &dsltest.Children{Parent: "mf"}, &dsltest.Suspender{}
	with := func(c *dsl.Ctx) { c.Journal, c.Children, c.Suspender = j, kids, sus }
	in := `{"repo":"acme/web","sha":"abcdef0","command":"pnpm test","shards":3,"env":{"CI_X":"1"},"secrets":["NPM_TOKEN"]}`
	if _, err := runOnce(t, runs.MatrixFanout, in, with); !dsl.IsSuspended(err) {
		t.Fatalf("first attempt: %v", err)
	}
	for i, id := range []string{"mf:shard-1", "mf:shard-2", "mf:shard-3"} {
		var child runs.OffloadTestInputs
		json.Unmarshal(kids.Inputs[id], &child)
		if child.Env["SHARD_INDEX"] != string(rune('1'+i)) || child.Env["SHARD_TOTAL"] != "3" || child.Env["CI_X"] != "1" ||
			child.Command != "pnpm test" || child.Secrets[0] != "NPM_TOKEN" || child.ReportOnly {
			t.Fatalf("child %s inputs %s", id, kids.Inputs[id])
		}
		// The child inputs are valid offload-test inputs.
		if _, err := runs.OffloadTest.DecodeInputs(kids.Inputs[id]); err != nil {
			t.Fatalf("child %s: %v", id, err)
		}
	}
	kids.Finish("shard-1", "success", runs.OffloadTestOutput{ExitCode: 0, DurationMs: 1200, LogURI: "logs/mf:shard-1/exec.ndjson"}, nil, 3*time.Second)
	fail := (&dsl.CommandFailed{ExitCode: 2, StderrTail: "FAIL", DurationMs: 900}).Failure()
	kids.Finish("shard-2", "failure", nil, &fail, 2*time.Second)
	kids.Finish("shard-3", "cancelled", nil, &dsl.Failure{Tag: dsl.TagCancelled, Message: "fail-fast"}, time.Second)

	out, err := runOnce(t, runs.MatrixFanout, in, with)
	var sf *dsl.ShardsFailed
	if !errors.As(err, &sf) || sf.Failed != 2 || sf.Total != 3 {
		t.Fatalf("%v", err)
	}
	for _, want := range []string{"**Matrix: 1/3 shards passed** (wait-all)", "| 1/3 | ✅ passed | 0 | 1.2 s | [logs](https://edge.test/logs/mf:shard-1) |",
		"| 2/3 | ❌ failed | 2 | 0.9 s |", "| 3/3 | ⊘ cancelled | — | 1.0 s |"} {
		if !strings.Contains(sf.SummaryMd, want) {
			t.Fatalf("table lacks %q:\n%s", want, sf.SummaryMd)
		}
	}
	_ = out
	// reportOnly: the same table, green, with passed+failed = shards.
	j2, kids2 := dsltest.NewJournal(), &dsltest.Children{Parent: "mf"}
	with2 := func(c *dsl.Ctx) { c.Journal, c.Children, c.Suspender = j2, kids2, sus }
	in2 := strings.Replace(in, `"shards":3`, `"shards":2,"reportOnly":true,"failureBehavior":"fail-fast"`, 1)
	runOnce(t, runs.MatrixFanout, in2, with2)
	if !kids2.FailFast {
		t.Fatal("fail-fast not passed on")
	}
	kids2.Finish("shard-1", "success", runs.OffloadTestOutput{}, nil, 0)
	kids2.Finish("shard-2", "failure", nil, &fail, 0)
	out, err = runOnce(t, runs.MatrixFanout, in2, with2)
	var o runs.MatrixFanoutOutput
	json.Unmarshal(out, &o)
	if err != nil || o.Passed != 1 || o.Failed != 1 || len(o.ShardResults) != 2 || !strings.Contains(o.SummaryMd, "(fail-fast)") {
		t.Fatalf("reportOnly: %+v %v", o, err)
	}
}

func TestNewRunsRejectBadInputsWithTheField(t *testing.T) {
	for _, c := range []struct {
		run       dsl.Run
		in, field string
	}{
		{runs.MatrixFanout, `{"repo":"acme/web","sha":"abcdef0","command":"x","shards":1}`, "shards"},
		{runs.MatrixFanout, `{"repo":"acme/web","sha":"abcdef0","command":"x","shards":33}`, "shards"},
		{runs.MatrixFanout, `{"repo":"acme/web","sha":"abcdef0","command":"x","shards":2,"failureBehavior":"sometimes"}`, "failureBehavior"},
		{runs.MatrixFanout, `{"repo":"acme/web","sha":"abcdef0","shards":2}`, "command"},
		{runs.DeploySmoke, `{"repo":"acme/web","baseURL":"ftp://x"}`, "baseURL"},
		{runs.DeploySmoke, `{"repo":"acme/web","baseURL":"https://u:p@x.test"}`, "baseURL"},
		{runs.DeploySmoke, `{"repo":"acme/web","baseURL":"https://x.test","paths":["health"]}`, "paths[0]"},
		{runs.DeploySmoke, `{"repo":"acme/web","baseURL":"https://x.test","paths":["/a b"]}`, "paths[0]"},
		{runs.RefreshFixtures, `{"repo":"acme/web","sha":"zz","command":"x"}`, "sha"},
	} {
		_, err := c.run.DecodeInputs(json.RawMessage(c.in))
		var fe *dsl.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s %s: %v, want field %s", c.run.Spec().Name, c.in, err, c.field)
		}
	}
	got, err := runs.DeploySmoke.DecodeInputs(json.RawMessage(`{"repo":"acme/web","baseURL":"https://x.test"}`))
	if err != nil || !strings.Contains(string(got), `"paths":["/","/health","/api/status"]`) {
		t.Fatalf("defaults %s %v", got, err)
	}
}

func TestDeploySmokeFiresOnASuccessfulProductionDeployment(t *testing.T) {
	tr := runs.DeploySmoke.Spec().Triggers[0]
	payload := webhookexamples.Load("deployment_status.created.1")
	var tree map[string]any
	json.Unmarshal(payload, &tree)
	tree["deployment_status"].(map[string]any)["environment_url"] = "https://app.example.com"
	b, _ := json.Marshal(tree)
	e, err := dsl.ParseWebhookEvent("deployment_status", "d-1", b)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Matches(e) || !tr.Gate(e) {
		t.Fatal("a successful production deployment with a URL does not fire")
	}
	in, _ := json.Marshal(tr.Inputs(e))
	if _, err := runs.DeploySmoke.DecodeInputs(in); err != nil {
		t.Fatalf("trigger inputs %s: %v", in, err)
	}
	if id := tr.IdempotencyKey(e); !strings.HasPrefix(id, "deploy-smoke:") || strings.Contains(id, "/") {
		t.Fatalf("id %q", id)
	}
	tree["deployment_status"].(map[string]any)["state"] = "failure"
	b, _ = json.Marshal(tree)
	e, _ = dsl.ParseWebhookEvent("deployment_status", "d-2", b)
	if tr.Gate(e) {
		t.Fatal("a failed deployment fires")
	}
	tree["deployment_status"].(map[string]any)["state"] = "success"
	delete(tree["deployment_status"].(map[string]any), "environment_url")
	b, _ = json.Marshal(tree)
	e, _ = dsl.ParseWebhookEvent("deployment_status", "d-3", b)
	if tr.Gate(e) {
		t.Fatal("a deployment without a URL fires")
	}
}

func TestRefreshFixturesDeclaresItsWriteback(t *testing.T) {
	w := runs.RefreshFixtures.Spec().Writeback
	if w == nil || w.HeadBranch("x") != "flare-dispatch/refresh-fixtures" || w.AllowWorkflows || w.PR == nil || w.PR.Ready {
		t.Fatalf("%+v", w)
	}
	if max, files := w.Limits(); max != 5<<20 || files != 200 {
		t.Fatal(max, files)
	}
}
