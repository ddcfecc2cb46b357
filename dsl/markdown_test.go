package dsl_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// samples has one failure of every tag, as a run or an actor would make it.
var samples = []dsl.TypedError{
	&dsl.CheckoutFailed{Repo: "acme/web", SHA: "0123456789abcdef0123456789abcdef01234567", Cause: "fatal: couldn't find remote ref"},
	&dsl.ExecFailed{ExitCode: -1, Cause: "chdir /workspace/web: no such file or directory"},
	&dsl.CommandFailed{ExitCode: 1, StderrTail: strings.Repeat("FAIL src/a.test.ts > adds\n", 10) + "Tests: 1 failed, 41 passed\n"},
	&dsl.ShardsFailed{Failed: 1, Total: 4, SummaryMd: "| Shard | Result |\n|---|---|\n| 2/4 | ❌ exit 1 |"},
	&dsl.ExecTimeout{TimeoutSec: 600, Command: "pnpm test"},
	&dsl.ContainerLaunchFailed{Image: "lean", Cause: "no capacity"},
	&dsl.PortNeverOpened{Port: 3000, TimeoutSec: 120},
	&dsl.BrowserUnavailable{Reason: "quota", RetryAfterMs: 60000},
	&dsl.CacheError{Phase: "restore", Key: "pnpm-abc", Cause: "tar: unexpected EOF"},
	&dsl.ArtifactUploadFailed{Name: "playwright-report", Cause: "403 Forbidden"},
	&dsl.StepFailed{Step: "probe", Cause: "dial tcp: connection refused"},
	&dsl.ApprovalTimedOut{EventName: "approve-deploy", TimeoutMs: 3600000},
	&dsl.EventPayloadInvalid{EventName: "approve-deploy", Reason: "missing field approver"},
	&dsl.SecretsMissing{Keys: []string{"NPM_TOKEN", "DATABASE_URL"}},
	&dsl.GitHubApiError{Status: 429, Reason: "rate-limited", RetryAfterMs: 30000},
	&dsl.OidcSigningFailed{Reason: "key-load"},
	&dsl.StsAssumeRoleFailed{Provider: "aws", Status: 403, Reason: "AccessDenied"},
	&dsl.ContainerBusy{ContainerID: "offload-test-acme-web-0123456789ab", Holder: "offload-test:acme_web:0123456789ab", WaitedMs: 600000},
	&dsl.AdmissionTimedOut{QueuedForMs: 1200000, Position: 3, PoolBusy: 16, Cap: 16},
	&dsl.AcceptanceFailed{ExitCode: 1, SummaryMd: "| story | status |\n|---|---|\n| login | failed |"},
	&dsl.ExposePortFailed{Port: 8080, Cause: "SANDBOX_PREVIEW_HOSTNAME is unset"},
	&dsl.ReadFileFailed{Path: "/workspace/web/report.json", Message: "no such file"},
	&dsl.RunSkipped{Reason: "no specs changed"},
	&dsl.BackendUnconfigured{Backend: "bedrock", Missing: []string{"pr-review.bedrock.model"}},
	&dsl.ModelCallFailed{Reason: "rate-limited", Message: "429 from gateway"},
	&dsl.StructuredOutputInvalid{Surface: "review", Reason: "findings[0].level is not one of info|warn|error"},
	&dsl.AgentLost{Attempts: 3, SilentForMs: 30000},
	&dsl.RunTimedOut{MaxDurationSec: 1800},
	&dsl.SandboxStartFailed{Sandbox: "offload-test-acme-web-0123456789ab", Pool: "lean", Attempts: 4, Cause: "Containers have not been enabled"},
	&dsl.Cancelled{Reason: "cancelled by the user"},
	&dsl.StorageFull{What: "log exec.ndjson", Lost: 131072, Cause: "put logs/x/exec.ndjson.000003: 507 InsufficientStorage"},
}

func tagOf(t dsl.TypedError) string { return t.Failure().Tag }

func TestSamplesCoverEveryTag(t *testing.T) {
	var have []string
	for _, s := range samples {
		have = append(have, tagOf(s))
	}
	want := dsl.Tags()
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Fatalf("samples cover %v\nthe closed set is %v", have, want)
	}
}

func TestFailureRoundTripsThroughTheWire(t *testing.T) {
	for _, s := range samples {
		f := s.Failure()
		back := dsl.FromFailure(f)
		if reflect.TypeOf(back) != reflect.TypeOf(s) {
			t.Fatalf("%s: rebuilt as %T", f.Tag, back)
		}
		if g := dsl.AsFailure(back); g.Tag != f.Tag || g.Message != f.Message || string(g.Detail) != string(f.Detail) {
			t.Fatalf("%s: round trip %+v, want %+v", f.Tag, g, f)
		}
	}
}

func TestAsFailureMapsUntypedToStepFailed(t *testing.T) {
	f := dsl.AsFailure(errors.New("boom"))
	if f.Tag != dsl.TagStepFailed || f.Message != "boom" {
		t.Fatalf("got %+v", f)
	}
}

func TestFromFailureKeepsAnActorsMessage(t *testing.T) {
	// As actors.AdmissionTimedOut writes it.
	f := dsl.Failure{Tag: "AdmissionTimedOut", Message: "timed out waiting for a sandbox slot after 20m0s behind 2 run(s) (4/4 in use)",
		Detail: []byte(`{"queuedForMs":1200000,"position":2,"poolBusy":4,"cap":4}`)}
	err := dsl.FromFailure(f)
	var at *dsl.AdmissionTimedOut
	if !errors.As(err, &at) || at.Position != 2 || at.PoolBusy != 4 || err.Error() != f.Message {
		t.Fatalf("got %T %v", err, err)
	}
}

func TestMarkdownGolden(t *testing.T) {
	for _, s := range samples {
		f := s.Failure()
		t.Run(f.Tag, func(t *testing.T) {
			golden(t, filepath.Join("testdata", "markdown", f.Tag+".md"), dsl.Markdown(f))
		})
	}
	t.Run("unknown-tag", func(t *testing.T) {
		golden(t, filepath.Join("testdata", "markdown", "unknown-tag.md"),
			dsl.Markdown(dsl.Failure{Tag: "QuantumFlux", Message: "the <flux> capacitor @octocat"}))
	})
	t.Run("long-stderr", func(t *testing.T) {
		tail := strings.Repeat("x", 100) + "\n" + strings.Repeat("line with ``` fence\n", 400)
		golden(t, filepath.Join("testdata", "markdown", "long-stderr.md"),
			dsl.Markdown((&dsl.CommandFailed{ExitCode: 2, StderrTail: tail}).Failure()))
	})
}

// TestMarkdownCoversEveryTag checks that no tag of the set falls through to the generic
// rendering (the switch in Markdown is exhaustive).
func TestMarkdownCoversEveryTag(t *testing.T) {
	for _, s := range samples {
		f := s.Failure()
		if strings.Contains(dsl.Markdown(f), "**The run failed** (") {
			t.Errorf("%s renders generically", f.Tag)
		}
	}
}

func TestMarkdownStderrTailIsBounded(t *testing.T) {
	md := dsl.Markdown((&dsl.ExecFailed{ExitCode: 1, StderrTail: strings.Repeat("é", 5000)}).Failure())
	if len(md) > dsl.MaxStderrTail+300 {
		t.Fatalf("markdown is %d bytes", len(md))
	}
	if !strings.Contains(md, "```\n…") {
		t.Fatalf("tail not marked as cut:\n%s", md[:200])
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./dsl -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./dsl -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
