package runs_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

type journal struct {
	mu sync.Mutex
	m  map[string]json.RawMessage
}

func (j *journal) Begin(context.Context, string) (bool, json.RawMessage, *dsl.Failure, error) {
	return false, nil, nil, nil
}

func (j *journal) End(_ context.Context, step string, r json.RawMessage, _ *dsl.Failure) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.m[step] = r
	return nil
}

type secrets map[string]string

func (s secrets) Load(_ context.Context, keys []string, prefix string, required bool) (map[string]string, error) {
	out := map[string]string{}
	var missing []string
	for _, k := range keys {
		if v, ok := s[prefix+k]; ok {
			out[k] = v
		} else {
			missing = append(missing, k)
		}
	}
	if required && len(missing) > 0 {
		return nil, &dsl.SecretsMissing{Keys: missing}
	}
	return out, nil
}

// sandbox records the command it was asked to run and answers with exit.
type sandbox struct {
	dsltest.SandboxBase
	exit int
	got  dsl.ExecRequest
}

func (s *sandbox) Checkout(_ context.Context, repo, sha string) (string, error) {
	return "/workspace/web", nil
}

func (s *sandbox) Exec(_ context.Context, r dsl.ExecRequest) (dsl.ExecResult, error) {
	s.got = r
	return dsl.ExecResult{ExitCode: s.exit, DurationMs: 12, LogURI: "logs/e/exec.ndjson", StderrTail: "boom\n"}, nil
}

func execute(t *testing.T, sb *sandbox, inputs string) (json.RawMessage, error) {
	t.Helper()
	run := runs.Registry()["offload-test"]
	norm, err := run.DecodeInputs(json.RawMessage(inputs))
	if err != nil {
		t.Fatal(err)
	}
	c := &dsl.Ctx{Context: context.Background(), Exec: "e", Attempt: 1, Run: "offload-test",
		Journal: &journal{m: map[string]json.RawMessage{}}, Sandbox: sb, Secrets: secrets{"ci/TOKEN": "t0k", "ci/MODE": "secret-mode"}}
	return run.Execute(c, norm)
}

func TestOffloadTestEnvIsSecretsThenDispatchEnv(t *testing.T) {
	sb := &sandbox{}
	out, err := execute(t, sb, `{"repo":"acme/web","sha":"abcdef0","command":"make test","secrets":["TOKEN","MODE"],"secretPrefix":"ci/","env":{"MODE":"plain"},"timeoutSec":90}`)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `{"exitCode":0,"durationMs":12,"logUri":"logs/e/exec.ndjson"}` {
		t.Fatalf("output %s", out)
	}
	if sb.got.Env["TOKEN"] != "t0k" || sb.got.Env["MODE"] != "plain" || sb.got.Timeout != 90*time.Second ||
		sb.got.Dir != "/workspace/web" || sb.got.Command != "make test" {
		t.Fatalf("exec request %+v", sb.got)
	}
}

func TestOffloadTestNonZeroExit(t *testing.T) {
	_, err := execute(t, &sandbox{exit: 1}, `{"repo":"acme/web","sha":"abcdef0","command":"make"}`)
	var cf *dsl.CommandFailed
	if !errors.As(err, &cf) || cf.ExitCode != 1 || cf.StderrTail != "boom\n" {
		t.Fatalf("got %v", err)
	}
	out, err := execute(t, &sandbox{exit: 1}, `{"repo":"acme/web","sha":"abcdef0","command":"make","reportOnly":true}`)
	if err != nil || string(out) != `{"exitCode":1,"durationMs":12,"logUri":"logs/e/exec.ndjson"}` {
		t.Fatalf("reportOnly: %s %v", out, err)
	}
}

func TestOffloadTestMissingSecret(t *testing.T) {
	sb := &sandbox{}
	_, err := execute(t, sb, `{"repo":"acme/web","sha":"abcdef0","command":"make","secrets":["NOPE"]}`)
	var sm *dsl.SecretsMissing
	if !errors.As(err, &sm) || sm.Keys[0] != "NOPE" || sb.got.Command != "" {
		t.Fatalf("got %v (ran %q)", err, sb.got.Command)
	}
}
