package runs_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

func TestBrowserRunsRejectBadInputsWithTheField(t *testing.T) {
	for _, c := range []struct {
		run       dsl.Run
		in, field string
	}{
		{runs.CDPAcceptance, `{"repo":"acme/web","sha":"abcdef0","appBootCommand":"npm start","appPort":0,"testCommand":"npm test"}`, "appPort"},
		{runs.CDPAcceptance, `{"repo":"acme/web","sha":"abcdef0","appBootCommand":" ","appPort":3000,"testCommand":"npm test"}`, "appBootCommand"},
		{runs.CDPAcceptance, `{"repo":"acme/web","sha":"abcdef0","appBootCommand":"x","appPort":3000,"testCommand":""}`, "testCommand"},
		{runs.CDPAcceptance, `{"repo":"acme/web","sha":"abcdef0","appBootCommand":"x","appPort":3000,"testCommand":"t","reportDir":"../x"}`, "reportDir"},
		{runs.PlaywrightE2E, `{"repo":"acme/web","sha":"abcdef0","shards":17}`, "shards"},
		{runs.PlaywrightE2E, `{"repo":"acme/web","sha":"abcdef0","baseURL":"ftp://x"}`, "baseURL"},
		{runs.PlaywrightE2E, `{"repo":"acme/web","sha":"abcdef0","project":"a;rm -rf /"}`, "project"},
		{runs.PlaywrightE2E, `{"repo":"acme/web","sha":"abcdef0","shards":2,"shard":3}`, "shard"},
		{runs.PlaywrightDemo, `{"repo":"acme/web","sha":"abcdef0","command":"node demo.js","artifactPath":"/etc"}`, "artifactPath"},
		{runs.PlaywrightDemo, `{"repo":"acme/web","sha":"abcdef0","command":"node demo.js"}`, "artifactPath"},
		{runs.ProductDemo, `{"repo":"acme/web","deployedUrl":"https://x.test"}`, "stories"},
		{runs.ProductDemo, `{"repo":"acme/web","deployedUrl":"https://x.test","storiesMarkdown":"no headings"}`, "stories"},
		{runs.ProductDemo, `{"repo":"acme/web","deployedUrl":"https://x.test","stories":[{"name":"a","prose":"b"}],"viewportPreset":"tv"}`, "viewportPreset"},
		{runs.ProductDemo, `{"repo":"acme/web","deployedUrl":"https://x.test","stories":[{"name":"a","prose":""}]}`, "stories[0].prose"},
		{runs.ProductDemo, `{"repo":"acme/web","deployedUrl":"https://x.test","stories":[{"name":"A","prose":"x"},{"name":"a","prose":"y"}]}`, "stories[1].name"},
		{runs.ProductDemo, `{"repo":"acme/web","deployedUrl":"javascript:alert(1)","stories":[{"name":"a","prose":"b"}]}`, "deployedUrl"},
	} {
		_, err := c.run.DecodeInputs(json.RawMessage(c.in))
		var fe *dsl.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s %s: %v, want field %s", c.run.Spec().Name, c.in, err, c.field)
		}
	}
	for _, r := range []dsl.Run{runs.CDPAcceptance, runs.PlaywrightE2E, runs.PlaywrightDemo, runs.ProductDemo} {
		if r.Spec().PoolName() != dsl.PoolBrowser {
			t.Errorf("%s runs in pool %s", r.Spec().Name, r.Spec().PoolName())
		}
	}
}

func TestStoriesFromMarkdown(t *testing.T) {
	got := runs.StoriesFromMarkdown("# Title\npreamble\n\n## Log in ##\nOpen /login.\n```\n## not a heading\n```\n\n## Checkout\nPay.\n")
	if len(got) != 2 || got[0].Name != "Log in" || got[0].Prose != "Open /login.\n```\n## not a heading\n```" || got[1].Name != "Checkout" || got[1].Prose != "Pay." {
		t.Fatalf("%+v", got)
	}
}

func TestPlaywrightE2EFiresOnLabelledPullRequestsFromPeople(t *testing.T) {
	tr := runs.PlaywrightE2E.Spec().Triggers[0]
	payload := webhookexamples.Load("pull_request.labeled.1")
	var tree map[string]any
	json.Unmarshal(payload, &tree)
	pr := tree["pull_request"].(map[string]any)
	event := func() *dsl.WebhookEvent {
		b, _ := json.Marshal(tree)
		e, err := dsl.ParseWebhookEvent("pull_request", "d", b)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	pr["labels"] = []any{map[string]any{"name": "bug"}}
	if e := event(); !tr.Matches(e) || tr.Gate(e) {
		t.Fatal("fires without the request-e2e label")
	}
	pr["labels"] = []any{map[string]any{"name": "request-e2e"}}
	e := event()
	if !tr.Gate(e) {
		t.Fatal("a labelled pull request from a person does not fire")
	}
	in, _ := json.Marshal(tr.Inputs(e))
	if _, err := runs.PlaywrightE2E.DecodeInputs(in); err != nil {
		t.Fatalf("trigger inputs %s: %v", in, err)
	}
	if id := tr.IdempotencyKey(e); !strings.HasPrefix(id, "playwright-e2e:") || strings.Contains(id, "/") {
		t.Fatalf("id %q", id)
	}
	pr["user"].(map[string]any)["login"] = "dependabot[bot]"
	if tr.Gate(event()) {
		t.Fatal("a bot's pull request fires")
	}
	pr["user"].(map[string]any)["login"], pr["user"].(map[string]any)["type"] = "renovate", "Bot"
	if tr.Gate(event()) {
		t.Fatal("a Bot-typed author fires")
	}
}

func TestPlaywrightDemoStepTimeoutIsExecPlusTwoMinutesCapped(t *testing.T) {
	for sec, want := range map[int]time.Duration{60: 180 * time.Second, 1200: 1320 * time.Second, 1700: 1800 * time.Second, 3600: 1800 * time.Second} {
		if got := runs.DemoStepTimeout(sec); got != want {
			t.Errorf("timeoutSec %d: step timeout %s, want %s", sec, got, want)
		}
	}
}

func TestPlaywrightJSONReportIsRead(t *testing.T) {
	report := `{"config":{"rootDir":"/ws/web/e2e"},"suites":[{"title":"cart.spec.ts","file":"cart.spec.ts","specs":[],
	  "suites":[{"title":"cart","file":"cart.spec.ts","specs":[
	    {"title":"adds","file":"cart.spec.ts","line":4,"tests":[{"projectName":"chromium","status":"expected","results":[{}]}]},
	    {"title":"pays","file":"cart.spec.ts","line":9,"tests":[{"projectName":"chromium","status":"unexpected","results":[{"error":{"message":"\u001b[31mExpected\u001b[39m 1"}}]}]},
	    {"title":"retries","file":"cart.spec.ts","line":14,"tests":[{"projectName":"chromium","status":"flaky","results":[{},{}]}]}]}]}],
	  "stats":{"expected":1,"unexpected":1,"flaky":1,"skipped":0},"errors":[]}`
	tests, failures, flaky, errText := runs.ParsePlaywrightJSON([]byte(report), "/ws/web")
	if errText != "" || tests != (runs.PlaywrightTests{Passed: 1, Failed: 1, Flaky: 1}) || len(flaky) != 1 || flaky[0] != "cart › retries" {
		t.Fatalf("%+v %v %q", tests, flaky, errText)
	}
	if len(failures) != 1 || failures[0] != (runs.PlaywrightFailure{Title: "cart › pays", File: "e2e/cart.spec.ts", Line: 9, Project: "chromium", Message: "Expected 1"}) {
		t.Fatalf("%+v", failures)
	}
	// A suite that never ran its tests (a config error) counts as failed.
	tests, failures, _, _ = runs.ParsePlaywrightJSON([]byte(`{"suites":[],"stats":{},"errors":[{"message":"Error: cannot find module"}]}`), "/ws")
	if tests.Failed != 1 || len(failures) != 1 {
		t.Fatalf("%+v %+v", tests, failures)
	}
	if _, _, _, errText := runs.ParsePlaywrightJSON([]byte(`not json`), "/ws"); errText == "" {
		t.Fatal("garbage parsed")
	}
}
