//go:build js && wasm

package runs

import "github.com/flare-dispatch/flare-dispatch/dsl"

// The Worker serves the registry (names, triggers, schedules, input types, cooldowns)
// but never executes a run: agents do. The agentic runs' bodies — the review engine,
// its prompts, the report logic and one generic step instantiation per result type —
// are left out of its bundle (about 100 KiB gzip, specs/cloudflare.md "Sizes"); these
// stand in for them so the specs link.

func notInWorker(run string) error {
	return &dsl.StepFailed{Step: run, Cause: "runs execute in an agent, never in the Worker"}
}

func runPRReview(*dsl.Ctx, PRReviewInputs) (PRReviewOutput, error) {
	return PRReviewOutput{}, notInWorker("pr-review")
}

func runCITriage(*dsl.Ctx, ReportRunInputs) (CITriageOutput, error) {
	return CITriageOutput{}, notInWorker("ci-triage-pr")
}

func runSpecDrift(*dsl.Ctx, ReportRunInputs) (SpecDriftOutput, error) {
	return SpecDriftOutput{}, notInWorker("spec-drift-pr")
}
