//go:build !(js && wasm)

package runs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs/modelcfg"
	"github.com/flare-dispatch/flare-dispatch/runs/prreview"
)

// pr-review's body: only agents execute it (the Worker links the spec, see
// agentic_worker.go).

// prReviewSettings are the review's CONFIG_KV settings besides the backend.
type prReviewSettings struct {
	Backend    modelcfg.Resolved `json:"backend"`
	Mode       string            `json:"mode"`
	Prompt     string            `json:"prompt,omitempty"`
	Guidelines string            `json:"guidelines,omitempty"`
	Style      string            `json:"style"`
	CompactMax int               `json:"compactMax"`
}

// maxJournaledDiff keeps the prepared diff inside a step result (1 MiB of JSON).
const maxJournaledDiff = 400_000

func runPRReview(c *dsl.Ctx, in PRReviewInputs) (PRReviewOutput, error) {
	settings, err := dsl.Step(c, "resolve-backend", func(ctx context.Context) (prReviewSettings, error) {
		return loadPRReviewSettings(ctx, c.Config, in)
	})
	if err != nil {
		return PRReviewOutput{}, reviewFailed(c, in, err)
	}
	out, err := reviewPR(c, in, settings)
	if err != nil {
		return out, reviewFailed(c, in, err)
	}
	return out, nil
}

func loadPRReviewSettings(ctx context.Context, cfg dsl.ConfigStore, in PRReviewInputs) (prReviewSettings, error) {
	b, err := modelcfg.Load(ctx, cfg, "pr-review", modelcfg.Overrides{Backend: in.Backend, Model: in.ModelID, Region: in.Region, RoleArn: in.RoleArn})
	if err != nil {
		return prReviewSettings{}, err
	}
	s := prReviewSettings{Backend: b, Mode: "multi", Style: "default", CompactMax: 7}
	if cfg != nil {
		v, err := cfg.Get(ctx, []string{"pr-review.agents", "pr-review.prompt", "pr-review.guidelines", "pr-review.style", "pr-review.compact-max"})
		if err != nil {
			return prReviewSettings{}, err
		}
		if v["pr-review.agents"] == "single" {
			s.Mode = "single"
		}
		s.Prompt, s.Guidelines = v["pr-review.prompt"], v["pr-review.guidelines"]
		if v["pr-review.style"] == "compact" {
			s.Style = "compact"
		}
		if n, err := strconv.Atoi(v["pr-review.compact-max"]); err == nil {
			s.CompactMax = min(max(n, 1), 100)
		}
	}
	if in.Agents != "" { // input > CONFIG_KV > multi
		s.Mode = in.Agents
	}
	s.Backend.MaxDiffChars = min(s.Backend.MaxDiffChars, maxJournaledDiff)
	return s, nil
}

func reviewPR(c *dsl.Ctx, in PRReviewInputs, s prReviewSettings) (PRReviewOutput, error) {
	if c.Model == nil {
		return PRReviewOutput{}, &dsl.StepFailed{Step: "review", Cause: "this platform offers no model gateway"}
	}
	dir, err := dsl.Step(c, "checkout", func(ctx context.Context) (string, error) {
		dir, err := c.Sandbox.Checkout(ctx, in.Repo, in.SHA)
		if err != nil {
			return "", err
		}
		if h, ok := c.Sandbox.(dsl.HistoryFetcher); ok {
			if err := h.FetchHistory(ctx, dir, in.BaseSHA); err != nil {
				return "", &dsl.CheckoutFailed{Repo: in.Repo, SHA: in.BaseSHA, Cause: "fetch the base's history: " + err.Error()}
			}
		}
		return dir, nil
	}, dsl.Retries(1))
	if err != nil {
		return PRReviewOutput{}, err
	}
	prep, err := dsl.Step(c, "prepare-diff", func(ctx context.Context) (prreview.Prepared, error) {
		d, err := gitOutput(ctx, c.Sandbox, dir, prreview.DiffCommand(in.BaseSHA, in.SHA))
		if err != nil {
			return prreview.Prepared{}, err
		}
		return prreview.Prepare(d, s.Backend.MaxDiffChars), nil
	})
	if err != nil {
		return PRReviewOutput{}, err
	}
	agents := prreview.Agents(prep.Tier, s.Mode)
	base := s.Backend.Request()
	prompt := prreview.Prompt{Base: s.Prompt, Guidelines: s.Guidelines, Focus: in.FocusArea}
	reviews, err := dsl.Step(c, "review", func(ctx context.Context) (prreview.Reviews, error) {
		if strings.TrimSpace(prep.Diff) == "" {
			return prreview.Reviews{}, nil // nothing reviewable (only noise, or no change)
		}
		r, err := prreview.Review(ctx, c.Model, base, agents, prompt, prep.Diff)
		return r, modelcfg.Unconfigured("pr-review", err)
	}, dsl.Timeout(20*time.Minute))
	if err != nil {
		return PRReviewOutput{}, err
	}

	// The last review of this pull request, for the re-review.
	var priorSHA string
	var prior []prreview.Finding
	if in.PR > 0 && c.Comments != nil {
		type priorState struct {
			SHA      string             `json:"sha,omitempty"`
			Findings []prreview.Finding `json:"findings,omitempty"`
		}
		ps, err := dsl.Step(c, "load-prior", func(ctx context.Context) (priorState, error) {
			body, found, err := c.Comments.FindComment(ctx, in.Repo, in.PR, prreview.Marker)
			if err != nil || !found {
				return priorState{}, err
			}
			sha, fs, ok := prreview.ParseState(body)
			if !ok || sha == in.SHA {
				return priorState{}, nil
			}
			return priorState{SHA: sha, Findings: fs}, nil
		}, dsl.Retries(2))
		if err != nil {
			logOf(c).Warn("pr-review: could not read the last review; reviewing from scratch", "err", err)
		}
		priorSHA, prior = ps.SHA, ps.Findings
	}
	outcome := prreview.Coordinate(reviews, prep.Tier)
	if priorSHA != "" {
		push, known := pushDiff(c, dir, priorSHA, in.SHA)
		var current []prreview.Finding
		for _, a := range reviews.Agents {
			current = append(current, a.Findings...)
		}
		outcome = prreview.Rereview(prior, prreview.Dedup(current), prreview.SplitDiff(push), known, prep.Tier)
	}
	comment := prreview.Render(prreview.CommentInput{Repo: in.Repo, SHA: in.SHA, PriorSHA: priorSHA, Outcome: outcome, Reviews: reviews,
		Prepared: prep, MaxChars: s.Backend.MaxDiffChars, Style: s.Style, CompactMax: s.CompactMax})
	out := PRReviewOutput{Verdict: outcome.Verdict, Tier: outcome.Tier, Critical: outcome.Critical, Warnings: outcome.Warnings,
		Suggestions: outcome.Suggestions, Resolved: len(outcome.Resolved), Findings: prreview.Annotations(outcome), Agents: agents,
		Backend: s.Backend.Backend, Model: s.Backend.Model, InputTokens: reviews.InputTokens, OutputTokens: reviews.OutputTokens,
		DiffChars: len(prep.Diff), Truncated: prep.Truncated, Comment: comment}
	if out.Findings == nil {
		out.Findings = []dsl.Finding{}
	}
	if in.PR > 0 && c.Comments != nil {
		// Best effort: the check and its annotations carry the review as well.
		res, err := dsl.Step(c, "post-comment", func(ctx context.Context) (dsl.CommentResult, error) {
			return c.Comments.PutComment(ctx, in.Repo, in.PR, prreview.Marker, comment)
		}, dsl.Retries(2))
		if err != nil {
			logOf(c).Warn("pr-review: could not post the comment", "err", err)
		}
		out.CommentURL = res.URL
	}
	return out, nil
}

// pushDiff is the diff from the last reviewed commit to this one; known is false when
// it cannot be made (the commit is gone after a force push).
func pushDiff(c *dsl.Ctx, dir, from, to string) (string, bool) {
	type pd struct {
		Diff  string `json:"diff"`
		Known bool   `json:"known"`
	}
	r, err := dsl.Step(c, "push-diff", func(ctx context.Context) (pd, error) {
		if h, ok := c.Sandbox.(dsl.HistoryFetcher); ok {
			if err := h.FetchHistory(ctx, dir, from); err != nil {
				return pd{}, nil
			}
		}
		d, err := gitOutput(ctx, c.Sandbox, dir, "git diff --unified=0 --no-color --no-ext-diff "+from+" "+to)
		if err != nil {
			return pd{}, nil
		}
		if len(d) > maxJournaledDiff {
			return pd{}, nil // too large to keep: treat as unknown
		}
		return pd{Diff: d, Known: true}, nil
	})
	if err != nil {
		return "", false
	}
	return r.Diff, r.Known
}

// gitOutput runs a git command in dir with its output in a file (an exec result keeps
// only the last 16 KiB of a stream) and reads the file.
func gitOutput(ctx context.Context, sb dsl.Sandbox, dir, command string) (string, error) {
	out := path.Join(dir, ".git", "flare-output")
	res, err := sb.Exec(ctx, dsl.ExecRequest{Dir: dir, Command: command + " > .git/flare-output", Timeout: 5 * time.Minute})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", &dsl.CommandFailed{ExitCode: res.ExitCode, StderrTail: res.StderrTail, LogURI: res.LogURI}
	}
	b, err := sb.ReadFile(ctx, out)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// reviewFailed leaves the failure comment on the pull request (best effort) and
// returns the failure for a red check; a missing configuration names the key to set.
func reviewFailed(c *dsl.Ctx, in PRReviewInputs, err error) error {
	if c.Err() != nil || dsl.IsSuspended(err) {
		return err
	}
	if in.PR > 0 && c.Comments != nil {
		body := prreview.RenderFailure(failureReason(err), "")
		if _, perr := dsl.Step(c, "post-failure-comment", func(ctx context.Context) (dsl.CommentResult, error) {
			return c.Comments.PutComment(ctx, in.Repo, in.PR, prreview.Marker, body)
		}); perr != nil {
			logOf(c).Warn("pr-review: could not post the failure comment", "err", perr)
		}
	}
	return err
}

func failureReason(err error) string {
	var bu *dsl.BackendUnconfigured
	if errors.As(err, &bu) {
		return fmt.Sprintf("the %s model backend is not configured — set %s in CONFIG_KV", bu.Backend, strings.Join(bu.Missing, ", "))
	}
	return err.Error()
}

// logOf is the run's logger (a Ctx may have none in tests).
func logOf(c *dsl.Ctx) *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.New(slog.DiscardHandler)
}
