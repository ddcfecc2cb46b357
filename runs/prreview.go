package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs/modelcfg"
	"github.com/flare-dispatch/flare-dispatch/runs/prreview"
)

// pr-review: the AI reviewer (contract §8). The three-dot diff of the pull request,
// noise stripped and capped, goes to one reviewer or up to seven in parallel through
// the edge's model gateway (the sandbox holds no model key); their findings are
// coordinated into a verdict, kept as one comment on the pull request (updated in
// place on every push, with findings the push fixed marked resolved) and shown as
// check annotations. Fired by pull_request webhooks, or dispatched; run locally with
// `flare run pr-review --repo . --base main`, it prints the review instead.

// PRReviewInputs are pr-review's inputs.
type PRReviewInputs struct {
	Repo           string `json:"repo"`
	SHA            string `json:"sha"`
	BaseSHA        string `json:"baseSha"`
	PR             int    `json:"pr,omitempty"` // 0 = no pull request: the review is only returned (local use)
	InstallationID int64  `json:"installationId,omitempty"`
	// Per-dispatch overrides (Action mode; the operator's own inputs).
	Agents    string `json:"agents,omitempty"` // single | multi
	Backend   string `json:"backend,omitempty"`
	ModelID   string `json:"modelId,omitempty"`
	Region    string `json:"region,omitempty"`
	RoleArn   string `json:"roleArn,omitempty"`
	FocusArea string `json:"focusArea,omitempty"`
}

// PRReviewOutput is pr-review's output; Findings become the check's annotations.
type PRReviewOutput struct {
	Verdict      string        `json:"verdict"`
	Tier         string        `json:"tier"`
	Critical     int           `json:"critical"`
	Warnings     int           `json:"warnings"`
	Suggestions  int           `json:"suggestions"`
	Resolved     int           `json:"resolved,omitempty"`
	Findings     []dsl.Finding `json:"findings"`
	Agents       []string      `json:"agents"`
	Backend      string        `json:"backend,omitempty"`
	Model        string        `json:"model,omitempty"`
	InputTokens  int           `json:"inputTokens"`
	OutputTokens int           `json:"outputTokens"`
	DiffChars    int           `json:"diffChars"`
	Truncated    bool          `json:"truncated,omitempty"`
	CommentURL   string        `json:"commentUrl,omitempty"`
	Comment      string        `json:"comment"` // the review as posted (or, locally, to print)
}

var shaPattern = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// Validate checks the inputs' values.
func (in *PRReviewInputs) Validate() error {
	if fe := validateRepo("repo", in.Repo); fe != nil {
		return fe
	}
	switch {
	case !shaPattern.MatchString(in.SHA):
		return &dsl.FieldError{Field: "sha", Message: "must be a commit sha (7 to 64 lowercase hex digits)"}
	case !shaPattern.MatchString(in.BaseSHA):
		return &dsl.FieldError{Field: "baseSha", Message: "must be a commit sha (7 to 64 lowercase hex digits)"}
	case in.PR < 0:
		return &dsl.FieldError{Field: "pr", Message: "must be a pull request number"}
	case in.Agents != "" && in.Agents != "single" && in.Agents != "multi":
		return &dsl.FieldError{Field: "agents", Message: `must be "single" or "multi"`}
	case len(in.FocusArea) > 2000:
		return &dsl.FieldError{Field: "focusArea", Message: "at most 2000 characters"}
	}
	return nil
}

// PR review labels (contract §8).
const (
	labelSkipReview    = "skip-ai-review"
	labelRequestReview = "request-ai-review"
)

// PRReviewGate is the webhook gate: not from a bot, not labelled skip-ai-review, not a
// draft unless labelled request-ai-review, open; a labeled event only for the label
// that asks for a review.
func PRReviewGate(e *dsl.WebhookEvent) bool {
	labels := e.Strings("pull_request.labels", "name")
	switch {
	case slices.Contains(labels, labelSkipReview):
		return false
	case strings.HasSuffix(e.String("pull_request.user.login"), "[bot]"), strings.HasSuffix(e.String("sender.login"), "[bot]"):
		return false
	case e.String("pull_request.state") == "closed":
		return false
	case e.Bool("pull_request.draft") && !slices.Contains(labels, labelRequestReview):
		return false
	case e.String("action") == "labeled" && e.String("label.name") != labelRequestReview:
		return false
	}
	return true
}

// PRReviewCooldown is the window between two reviews of one pull request.
const PRReviewCooldown = 30 * time.Minute

// PRReview is the pr-review run.
var PRReview = dsl.Define(dsl.Spec{
	Name:        "pr-review",
	Version:     "3.0.0",
	Description: "AI code review of a pull request by up to seven reviewers, as one comment kept up to date and check annotations.",
	Pool:        dsl.PoolLean,
	MaxDuration: 1500 * time.Second,
	Needs:       dsl.Needs{Config: []string{"pr-review"}, Model: true, Comments: true},
	Triggers: []dsl.Trigger{{
		Event:   "pull_request",
		Actions: []string{"opened", "synchronize", "ready_for_review", "labeled"},
		Gate:    PRReviewGate,
		IdempotencyKey: func(e *dsl.WebhookEvent) string {
			return dsl.SemanticKey("pr-review", e.Repo(), e.String("pull_request.head.sha"))
		},
		Inputs: func(e *dsl.WebhookEvent) any {
			return PRReviewInputs{Repo: e.Repo(), SHA: e.String("pull_request.head.sha"), BaseSHA: e.String("pull_request.base.sha"),
				PR: int(e.Int("pull_request.number")), InstallationID: e.Int("installation.id")}
		},
	}},
	Cooldown: &dsl.Cooldown{Window: PRReviewCooldown, Scope: func(inputs json.RawMessage) string {
		var in struct {
			PR int `json:"pr"`
		}
		if err := json.Unmarshal(inputs, &in); err != nil || in.PR <= 0 {
			return ""
		}
		return "pr-" + strconv.Itoa(in.PR)
	}},
}, runPRReview)

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
