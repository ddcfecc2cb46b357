// Package testruns holds runs that exist only for tests of the triggers: a scheduled
// run, a run that reports findings and a run that waits for an admin event. (The
// webhook tests use deploy-smoke, which declares a trigger.) The local stack's tests register them with the edge; `flare agent` knows them
// when built with -tags flaretest.
package testruns

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// All returns the test runs.
func All() []dsl.Run { return []dsl.Run{Scheduled, Findings, Approval, Skip} }

// Cron is Scheduled's schedule.
const Cron = "17 3 * * *"

// ScheduledInputs are test-scheduled's.
type ScheduledInputs struct {
	FiredAt string `json:"firedAt"`
}

// Scheduled runs a command at its cron.
var Scheduled = dsl.Define(dsl.Spec{
	Name: "test-scheduled", Version: "1.0.0", MaxDuration: 5 * time.Minute,
	Schedules: []dsl.Schedule{{
		Cron:           Cron,
		IdempotencyKey: func(t time.Time) string { return "test-scheduled:" + t.UTC().Format("2006-01-02") },
		Inputs:         func(t time.Time) any { return ScheduledInputs{FiredAt: t.UTC().Format(time.RFC3339)} },
	}},
}, func(c *dsl.Ctx, in ScheduledInputs) (dsl.ExecResult, error) {
	return dsl.Step(c, "say", func(ctx context.Context) (dsl.ExecResult, error) {
		return c.Sandbox.Exec(ctx, dsl.ExecRequest{Command: "echo fired at " + in.FiredAt})
	})
})

// FindingsInputs are test-findings'.
type FindingsInputs struct {
	Count int `json:"count"`
}

// Findings reports Count findings.
var Findings = dsl.Define(dsl.Spec{Name: "test-findings", Version: "1.0.0", MaxDuration: 5 * time.Minute},
	func(c *dsl.Ctx, in FindingsInputs) (map[string]any, error) {
		var fs []dsl.Finding
		for i := range in.Count {
			fs = append(fs, dsl.Finding{Path: fmt.Sprintf("pkg/f%03d.go", i), StartLine: i + 1, Level: dsl.LevelWarning,
				Title: "test finding", Message: fmt.Sprintf("finding %d", i)})
		}
		return map[string]any{"findings": fs}, nil
	})

// ApprovalInputs are test-approval's.
type ApprovalInputs struct {
	TimeoutMs int64 `json:"timeoutMs"`
}

// Approval waits for an "approve" event and returns its payload.
var Approval = dsl.Define(dsl.Spec{Name: "test-approval", Version: "1.0.0", MaxDuration: 10 * time.Minute},
	func(c *dsl.Ctx, in ApprovalInputs) (map[string]json.RawMessage, error) {
		payload, err := dsl.WaitForEvent(c, "approval", "approve", time.Duration(in.TimeoutMs)*time.Millisecond)
		if err != nil {
			return nil, err
		}
		return map[string]json.RawMessage{"approved": payload}, nil
	})

// SkipInputs are test-skip's.
type SkipInputs struct {
	Reason string `json:"reason"`
}

// Skip decides there is nothing to do: its check-run is neutral (RunSkipped).
var Skip = dsl.Define(dsl.Spec{Name: "test-skip", Version: "1.0.0", MaxDuration: 5 * time.Minute},
	func(c *dsl.Ctx, in SkipInputs) (map[string]any, error) {
		return nil, &dsl.RunSkipped{Reason: in.Reason}
	})
