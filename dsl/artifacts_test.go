package dsl_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
)

type found struct {
	Findings []dsl.Finding `json:"findings"`
}

// A run that fails with a result hands both back, so its findings annotate a red
// check; without a result, only the failure.
func TestExecuteKeepsTheOutputOfAFailedRun(t *testing.T) {
	run := dsl.Define(dsl.Spec{Name: "finds", Version: "1.0.0", MaxDuration: time.Minute}, func(c *dsl.Ctx, in struct {
		Fail bool `json:"fail"`
		Out  bool `json:"out"`
	}) (found, error) {
		var o found
		if in.Out {
			o.Findings = []dsl.Finding{{Path: "a.go", StartLine: 1, Message: "bad"}}
		}
		if in.Fail {
			return o, &dsl.AcceptanceFailed{ExitCode: 1}
		}
		return o, nil
	})
	c := &dsl.Ctx{Context: context.Background(), Exec: "e", Attempt: 1, Run: "finds", Journal: dsltest.NewJournal()}
	out, err := run.Execute(c, json.RawMessage(`{"fail":true,"out":true}`))
	var af *dsl.AcceptanceFailed
	if !errors.As(err, &af) || string(out) != `{"findings":[{"path":"a.go","startLine":1,"message":"bad"}]}` {
		t.Fatalf("%s %v", out, err)
	}
	out, err = run.Execute(c, json.RawMessage(`{"fail":true}`))
	if err == nil || out != nil {
		t.Fatalf("a failure without a result: %s %v", out, err)
	}
}
