package runs

import (
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// ci-triage-pr and spec-drift-pr: the two scheduled report runs, both on the
// report-PR recipe (dsl.RunReportPR): gather, ask a model once, and open or update the
// day's draft pull request. A quiet day (no failed runs; no drift) opens nothing, and
// ci-triage-pr then makes no model call at all. The repositories come from CONFIG_KV
// (<ns>.repos), which also lets the edge serve GitHub calls on them (Needs.ReposKey);
// a dispatch may name one repository instead.

// ReportRunInputs are the inputs of both report runs.
type ReportRunInputs struct {
	FiredAt     time.Time `json:"firedAt,omitzero"` // the schedule's tick; zero = now
	Repo        string    `json:"repo,omitempty"`   // instead of <ns>.repos
	WindowHours int       `json:"windowHours,omitempty"`
}

// Validate checks the inputs' values.
func (in *ReportRunInputs) Validate() error {
	if in.Repo != "" {
		if fe := validateRepo("repo", in.Repo); fe != nil {
			return fe
		}
	}
	if in.WindowHours < 0 || in.WindowHours > 24*14 {
		return &dsl.FieldError{Field: "windowHours", Message: "must be between 1 and 336"}
	}
	return nil
}

// CITriageOutput is ci-triage-pr's output.
type CITriageOutput struct {
	ReposScanned    int    `json:"reposScanned"`
	ActionsFailures int    `json:"actionsFailures"`
	DeployFailures  int    `json:"deployFailures"`
	PROpened        bool   `json:"prOpened"`
	PRUpdated       bool   `json:"prUpdated"`
	PRNumber        int    `json:"prNumber,omitempty"`
	PRURL           string `json:"prUrl,omitempty"`
	InputTokens     int    `json:"inputTokens,omitempty"`
	OutputTokens    int    `json:"outputTokens,omitempty"`
}

// SpecDriftOutput is spec-drift-pr's output.
type SpecDriftOutput struct {
	ReposScanned int      `json:"reposScanned"`
	PRsOpened    int      `json:"prsOpened"`
	PRsUpdated   int      `json:"prsUpdated"`
	ReposClean   int      `json:"reposClean"`
	Failed       []string `json:"failed,omitempty"` // repositories skipped after an error
	InputTokens  int      `json:"inputTokens,omitempty"`
	OutputTokens int      `json:"outputTokens,omitempty"`
}

func dailySchedule(run, cron string) dsl.Schedule {
	return dsl.Schedule{
		Cron:           cron,
		IdempotencyKey: func(at time.Time) string { return run + ":" + at.UTC().Format("2006-01-02") },
		Inputs:         func(at time.Time) any { return ReportRunInputs{FiredAt: at.UTC()} },
	}
}

// CITriagePR is the ci-triage-pr run.
var CITriagePR = dsl.Define(dsl.Spec{
	Name:        "ci-triage-pr",
	Version:     "1.0.0",
	Description: "Triage the last day's failed CI runs with a model and propose the report as a dated draft pull request.",
	Pool:        dsl.PoolLean,
	MaxDuration: 1800 * time.Second,
	Schedules:   []dsl.Schedule{dailySchedule("ci-triage-pr", "0 6 * * *")},
	Needs:       dsl.Needs{Config: []string{"ci-triage"}, Model: true, CI: true, PullRequests: true, ReposKey: "ci-triage.repos"},
}, runCITriage)

// SpecDriftPR is the spec-drift-pr run.
var SpecDriftPR = dsl.Define(dsl.Spec{
	Name:        "spec-drift-pr",
	Version:     "1.0.0",
	Description: "Compare each repository's specs/ with its code and history, and propose spec edits as a dated draft pull request.",
	Pool:        dsl.PoolLean,
	MaxDuration: 3600 * time.Second,
	Schedules:   []dsl.Schedule{dailySchedule("spec-drift-pr", "0 5 * * *")},
	Needs:       dsl.Needs{Config: []string{"spec-drift"}, Model: true, PullRequests: true, ReposKey: "spec-drift.repos"},
}, runSpecDrift)
