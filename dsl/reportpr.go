package dsl

import (
	"context"
	"strings"
)

// ReportPR is the work of a report-PR run (spec-drift-pr, ci-triage-pr and their kin):
// gather something, and when there is anything to report, open a draft pull request
// with it on a branch of its own — or update the open one, so a rerun the same day
// does not open a second.
type ReportPR struct {
	Repo       string
	BaseBranch string // "" = the repository's default branch
	HeadBranch string // e.g. flare-dispatch/spec-drift-2026-05-01
	Title      string
	// Marker is a hidden line that identifies the run's pull requests, e.g.
	// "<!-- flare-dispatch: spec-drift-pr -->"; it ends the body.
	Marker        string
	CommitMessage string // default: Title
	// Step names the step that opens the pull request ("" = open-pr); a run that
	// reports on several repositories needs one name per repository.
	Step string
}

// Report is what the gather part of a report-PR run produced.
type Report struct {
	Body  string       // the pull request's body (markdown)
	Files []FileChange // nothing to report when empty
}

// ReportPROutcome is what RunReportPR did.
type ReportPROutcome struct {
	Opened bool              `json:"opened"` // a pull request was created or updated
	PR     PullRequestResult `json:"pr"`
}

// RunReportPR is the recipe of report-PR runs: gather (the run's own steps) → when the
// report has files, step open-pr opens or updates the draft pull request through the
// edge (which holds the GitHub credentials; the run needs Spec.Needs.PullRequests).
// An empty report opens nothing.
func RunReportPR(c *Ctx, r ReportPR, gather func(c *Ctx) (Report, error)) (ReportPROutcome, error) {
	rep, err := gather(c)
	if err != nil {
		return ReportPROutcome{}, err
	}
	if len(rep.Files) == 0 {
		c.logger().Info("nothing to report: no pull request")
		return ReportPROutcome{}, nil
	}
	if c.GitHubAPI == nil {
		return ReportPROutcome{}, &StepFailed{Step: "open-pr", Cause: "this platform cannot open pull requests"}
	}
	body := strings.TrimRight(rep.Body, "\n")
	if r.Marker != "" {
		body += "\n\n" + r.Marker
	}
	msg := r.CommitMessage
	if msg == "" {
		msg = r.Title
	}
	step := r.Step
	if step == "" {
		step = "open-pr"
	}
	pr, err := Step(c, step, func(ctx context.Context) (PullRequestResult, error) {
		return c.GitHubAPI.OpenDraftPullRequest(ctx, DraftPullRequest{Repo: r.Repo, BaseBranch: r.BaseBranch, HeadBranch: r.HeadBranch,
			Title: r.Title, Body: body, CommitMessage: msg, Files: rep.Files})
	}, Retries(2))
	if err != nil {
		return ReportPROutcome{}, err
	}
	return ReportPROutcome{Opened: pr.Skipped == "", PR: pr}, nil
}
