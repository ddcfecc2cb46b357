package github

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"unicode/utf8"

	gh "github.com/google/go-github/v62/github"
)

// Check-run limits GitHub enforces.
const (
	// MaxSummaryLen is the longest output.summary GitHub accepts.
	MaxSummaryLen = 65535
	// MaxAnnotationsPerRequest is how many annotations one create or update
	// may carry; more are sent in further updates, which GitHub appends.
	MaxAnnotationsPerRequest = 50
)

// truncationNote ends a summary cut to fit MaxSummaryLen (contract §4.12).
const truncationNote = "\n\n_… summary truncated to fit the check-run limit._"

// TruncateSummary returns s unchanged when it fits the check-run limit, else
// its head cut on a character boundary plus the contract's note, together at
// most MaxSummaryLen bytes. GitHub counts characters; counting bytes is
// stricter, so the result fits either way.
func TruncateSummary(s string) string {
	if len(s) <= MaxSummaryLen {
		return s
	}
	cut := MaxSummaryLen - len(truncationNote)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncationNote
}

// Conclusion is how a completed check-run ended. The zero value means the run
// is still in progress.
type Conclusion string

const (
	ConclusionSuccess   Conclusion = "success"
	ConclusionFailure   Conclusion = "failure"
	ConclusionNeutral   Conclusion = "neutral"
	ConclusionCancelled Conclusion = "cancelled"
	ConclusionTimedOut  Conclusion = "timed_out"
)

func (c Conclusion) valid() bool {
	switch c {
	case "", ConclusionSuccess, ConclusionFailure, ConclusionNeutral, ConclusionCancelled, ConclusionTimedOut:
		return true
	}
	return false
}

// defaultTitle is the output title when the caller gives none.
func (c Conclusion) defaultTitle() string {
	switch c {
	case ConclusionSuccess:
		return "Succeeded"
	case ConclusionFailure:
		return "Failed"
	case ConclusionNeutral:
		return "Neutral"
	case ConclusionCancelled:
		return "Cancelled"
	case ConclusionTimedOut:
		return "Timed out"
	}
	return "In progress"
}

// Annotation is one finding attached to a line range of a file.
type Annotation struct {
	Path       string // repository-relative
	StartLine  int
	EndLine    int    // 0 means StartLine
	Level      string // "notice", "warning" or "failure"; "" means "warning"
	Title      string // optional
	Message    string
	RawDetails string // optional
}

// CheckRunUpdate is one change to a check-run.
type CheckRunUpdate struct {
	// Conclusion completes the run (completed_at = now). Leave it empty for an
	// in-progress update such as the queue position (edge.QueuedText).
	Conclusion Conclusion
	// Title of the output; empty means a default from the conclusion.
	Title string
	// Summary is markdown, truncated with TruncateSummary.
	Summary string
	// DetailsURL replaces the run's details link when not empty.
	DetailsURL string
	// Annotations are appended to the run's annotations, at most
	// MaxAnnotationsPerRequest per request.
	Annotations []Annotation
}

// wire shapes for the check-run update, written here because go-github's
// UpdateCheckRunOptions always sends name.
type checkRunPatch struct {
	Status      string          `json:"status,omitempty"`
	Conclusion  string          `json:"conclusion,omitempty"`
	CompletedAt *gh.Timestamp   `json:"completed_at,omitempty"`
	DetailsURL  string          `json:"details_url,omitempty"`
	Output      *checkRunOutput `json:"output,omitempty"`
}

type checkRunOutput struct {
	Title       string           `json:"title"`
	Summary     string           `json:"summary"`
	Annotations []annotationWire `json:"annotations,omitempty"`
}

type annotationWire struct {
	Path       string `json:"path"`
	StartLine  int    `json:"start_line"`
	EndLine    int    `json:"end_line"`
	Level      string `json:"annotation_level"`
	Title      string `json:"title,omitempty"`
	Message    string `json:"message"`
	RawDetails string `json:"raw_details,omitempty"`
}

// CreateCheckRun opens an in_progress check-run on headSHA and returns its id.
// detailsURL may be empty. The summary is the open text (contract §4.12).
func (c *Client) CreateCheckRun(ctx context.Context, inst int64, repo, name, headSHA, detailsURL, summary string) (int64, error) {
	inst, owner, repoName, err := c.target(ctx, inst, repo)
	if err != nil {
		return 0, err
	}
	opts := gh.CreateCheckRunOptions{
		Name:      name,
		HeadSHA:   headSHA,
		Status:    gh.String("in_progress"),
		StartedAt: &gh.Timestamp{Time: c.now().UTC()},
		Output: &gh.CheckRunOutput{
			Title:   gh.String(Conclusion("").defaultTitle()),
			Summary: gh.String(TruncateSummary(summary)),
		},
	}
	if detailsURL != "" {
		opts.DetailsURL = gh.String(detailsURL)
	}
	// A create that failed with a 5xx or a dropped connection may still have
	// been applied, and a duplicate would sit in_progress on the PR forever.
	// So each create carries a random external_id, and a retry first looks
	// for a run with it.
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	opts.ExternalID = gh.String("flare-dispatch-" + hex.EncodeToString(nonce))
	var run *gh.CheckRun
	ambiguous := false // the previous try failed in a way that may have applied it
	err = c.call(ctx, inst, func(g *gh.Client) error {
		if ambiguous {
			found, _, err := g.Checks.ListCheckRunsForRef(ctx, owner, repoName, headSHA, &gh.ListCheckRunsOptions{
				CheckName: gh.String(name), Filter: gh.String("all"), ListOptions: gh.ListOptions{PerPage: 100},
			})
			if err != nil {
				return err
			}
			for _, r := range found.CheckRuns {
				if r.GetExternalID() == opts.GetExternalID() {
					run = r
					return nil
				}
			}
		}
		var resp *gh.Response
		var err error
		run, resp, err = g.Checks.CreateCheckRun(ctx, owner, repoName, opts)
		ambiguous = err != nil && (resp == nil || resp.StatusCode >= 500)
		return err
	})
	if err != nil {
		return 0, err
	}
	return run.GetID(), nil
}

// UpdateCheckRun changes a check-run: an in-progress text (no conclusion) or
// its completion. With more than MaxAnnotationsPerRequest annotations the
// extra batches go first as output-only updates, so the run completes only
// once all of its annotations are attached.
func (c *Client) UpdateCheckRun(ctx context.Context, inst int64, repo string, id int64, u CheckRunUpdate) error {
	if !u.Conclusion.valid() {
		return fmt.Errorf("github: check-run conclusion %q is not one of success, failure, neutral, cancelled, timed_out", u.Conclusion)
	}
	inst, owner, name, err := c.target(ctx, inst, repo)
	if err != nil {
		return err
	}
	title := u.Title
	if title == "" {
		title = u.Conclusion.defaultTitle()
	}
	summary := TruncateSummary(u.Summary)
	batches := annotationBatches(u.Annotations)
	path := fmt.Sprintf("repos/%s/%s/check-runs/%d", owner, name, id)
	for i, batch := range batches {
		p := checkRunPatch{Output: &checkRunOutput{Title: title, Summary: summary, Annotations: batch}}
		if i == len(batches)-1 { // the last request carries the state change
			p.DetailsURL = u.DetailsURL
			if u.Conclusion == "" {
				p.Status = "in_progress"
			} else {
				p.Status = "completed"
				p.Conclusion = string(u.Conclusion)
				p.CompletedAt = &gh.Timestamp{Time: c.now().UTC()}
			}
		}
		err := c.call(ctx, inst, func(g *gh.Client) error {
			req, err := g.NewRequest("PATCH", path, &p)
			if err != nil {
				return err
			}
			_, err = g.Do(ctx, req, nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("update check-run %d (request %d of %d): %w", id, i+1, len(batches), err)
		}
	}
	return nil
}

// annotationBatches splits annotations into request-sized groups; always at
// least one (possibly empty) group so an update without annotations is sent.
func annotationBatches(as []Annotation) [][]annotationWire {
	wire := make([]annotationWire, len(as))
	for i, a := range as {
		end := a.EndLine
		if end == 0 {
			end = a.StartLine
		}
		level := a.Level
		if level == "" {
			level = "warning"
		}
		wire[i] = annotationWire{Path: a.Path, StartLine: a.StartLine, EndLine: end, Level: level,
			Title: a.Title, Message: a.Message, RawDetails: a.RawDetails}
	}
	var out [][]annotationWire
	for len(wire) > MaxAnnotationsPerRequest {
		out = append(out, wire[:MaxAnnotationsPerRequest])
		wire = wire[MaxAnnotationsPerRequest:]
	}
	return append(out, wire)
}
