package runs

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
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

var shaPattern = pattern.HexSHA

// Validate checks the inputs' values.
func (in *PRReviewInputs) Validate() error {
	if fe := validateRepo("repo", in.Repo); fe != nil {
		return fe
	}
	switch {
	case !shaPattern(in.SHA):
		return &dsl.FieldError{Field: "sha", Message: "must be a commit sha (7 to 64 lowercase hex digits)"}
	case !shaPattern(in.BaseSHA):
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
