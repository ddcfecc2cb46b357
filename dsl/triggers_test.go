package dsl_test

import (
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/webhookexamples"
)

func TestWebhookEventReadsRealPayloads(t *testing.T) {
	for _, ex := range webhookexamples.All() {
		ev, err := dsl.ParseWebhookEvent(ex.Event, "d-1", ex.Body)
		if err != nil {
			t.Fatalf("%s: %v", ex.Name, err)
		}
		if got := ev.String("action"); got != ex.Action {
			t.Errorf("%s: action %q", ex.Name, got)
		}
		if ex.Event != "installation" && ex.Event != "installation_repositories" && !strings.Contains(ev.Repo(), "/") {
			t.Errorf("%s: repo %q", ex.Name, ev.Repo())
		}
	}
	ev, _ := dsl.ParseWebhookEvent("deployment_status", "d", webhookexamples.Load("deployment_status.created.1"))
	if ev.String("deployment_status.state") != "success" || ev.Int("deployment.id") != 145988746 ||
		ev.HeadSHA() != "f95f852bd8fca8fcc58a9a2d6c842781e32a215e" || ev.Repo() != "Codertocat/Hello-World" {
		t.Fatalf("deployment_status readers: %q %d %q %q", ev.String("deployment_status.state"), ev.Int("deployment.id"), ev.HeadSHA(), ev.Repo())
	}
	pr, _ := dsl.ParseWebhookEvent("pull_request", "d", webhookexamples.Load("pull_request.labeled.1"))
	if len(pr.Strings("pull_request.labels", "name")) == 0 || pr.Ref() != "refs/heads/"+pr.String("pull_request.head.ref") || pr.Bool("pull_request.draft") {
		t.Fatalf("pull_request readers: labels %v ref %q", pr.Strings("pull_request.labels", "name"), pr.Ref())
	}
	// Ids beyond 2^53 keep their digits.
	big, _ := dsl.ParseWebhookEvent("x", "d", []byte(`{"installation":{"id":9007199254740993}}`))
	if big.Int("installation.id") != 9007199254740993 {
		t.Fatalf("big id %d", big.Int("installation.id"))
	}
}

func TestWebhookEventRejectsNonObjects(t *testing.T) {
	for _, body := range []string{``, `[]`, `null`, `"x"`, `{"a":1} {}`, `{`} {
		if _, err := dsl.ParseWebhookEvent("e", "d", []byte(body)); err == nil {
			t.Errorf("%q accepted", body)
		}
	}
}

func TestTriggerMatchesEventAndAction(t *testing.T) {
	ev, _ := dsl.ParseWebhookEvent("pull_request", "d", []byte(`{"action":"opened"}`))
	cases := []struct {
		t    dsl.Trigger
		want bool
	}{
		{dsl.Trigger{Event: "pull_request"}, true},
		{dsl.Trigger{Event: "pull_request", Actions: []string{"synchronize", "opened"}}, true},
		{dsl.Trigger{Event: "pull_request", Actions: []string{"closed"}}, false},
		{dsl.Trigger{Event: "push"}, false},
	}
	for i, c := range cases {
		if got := c.t.Matches(ev); got != c.want {
			t.Errorf("case %d: %v", i, got)
		}
	}
}

func TestSpecValidatesTriggers(t *testing.T) {
	key := func(*dsl.WebhookEvent) string { return "k" }
	in := func(*dsl.WebhookEvent) any { return nil }
	base := dsl.Spec{Name: "r", Version: "1.0.0", MaxDuration: 1}
	for _, tr := range []dsl.Trigger{
		{Event: "", IdempotencyKey: key, Inputs: in},
		{Event: "Pull Request", IdempotencyKey: key, Inputs: in},
		{Event: "push", Inputs: in},
		{Event: "push", IdempotencyKey: key},
	} {
		s := base
		s.Triggers = []dsl.Trigger{tr}
		if s.Validate() == nil {
			t.Errorf("%+v accepted", tr)
		}
	}
	base.Triggers = []dsl.Trigger{{Event: "push", IdempotencyKey: key, Inputs: in}}
	if err := base.Validate(); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseWebhookEvent(f *testing.F) {
	for _, ex := range webhookexamples.All()[:10] {
		f.Add(ex.Body, "deployment_status.state")
	}
	f.Add([]byte(`{"a":{"b":[1,{"c":"d"}]}}`), "a.b.c")
	f.Fuzz(func(t *testing.T, body []byte, path string) {
		ev, err := dsl.ParseWebhookEvent("e", "d", body)
		if err != nil {
			return
		}
		_ = ev.String(path)
		_ = ev.Int(path)
		_ = ev.Bool(path)
		_ = ev.Strings(path, "name")
		if ev.Repo() == "" || ev.HeadSHA() == "" || !strings.HasPrefix(ev.Ref(), "refs/") {
			t.Fatalf("target %q %q %q", ev.Repo(), ev.HeadSHA(), ev.Ref())
		}
	})
}
