package github

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Check-run limits GitHub enforces.
const (
	maxSummary        = 65535
	maxAnnotationsReq = 50
)

const truncationNote = "\n\n_… summary truncated to fit the check-run limit._"

// truncate cuts a summary to GitHub's limit on a character boundary, with the
// contract's note (as edge/github.TruncateSummary).
func truncate(s string) string {
	if len(s) <= maxSummary {
		return s
	}
	cut := maxSummary - len(truncationNote)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncationNote
}

func defaultTitle(conclusion string) string {
	switch conclusion {
	case "success":
		return "Succeeded"
	case "failure":
		return "Failed"
	case "neutral":
		return "Neutral"
	case "cancelled":
		return "Cancelled"
	case "timed_out":
		return "Timed out"
	}
	return "In progress"
}

type output struct {
	Title       string       `json:"title"`
	Summary     string       `json:"summary"`
	Annotations []annotation `json:"annotations,omitempty"`
}

type annotation struct {
	Path       string `json:"path"`
	StartLine  int    `json:"start_line"`
	EndLine    int    `json:"end_line"`
	Level      string `json:"annotation_level"`
	Title      string `json:"title,omitempty"`
	Message    string `json:"message"`
	RawDetails string `json:"raw_details,omitempty"`
}

type checkRun struct {
	ID         int64  `json:"id"`
	ExternalID string `json:"external_id"`
}

// Report implements edge.Checks: the first report of an execution creates its
// check-run (in_progress), every report then updates it.
func (c *Client) Report(ctx context.Context, e edge.Execution, r edge.CheckReport) (int64, error) {
	inst, prefix, err := c.target(ctx, r.Install, e.Repo)
	if err != nil {
		return 0, err
	}
	id := e.CheckRunID
	if id == 0 {
		if id, err = c.createCheckRun(ctx, inst, prefix, r.Name, e.SHA, r.DetailsURL, r.Summary); err != nil {
			return 0, err
		}
	}
	return id, c.updateCheckRun(ctx, inst, prefix, id, r)
}

// createCheckRun opens an in_progress check-run. A create that failed with a 5xx or
// no answer may still have been applied, and a duplicate would stay in_progress on
// the pull request forever: each create carries a random external_id, and a retry
// first looks for a run with it.
func (c *Client) createCheckRun(ctx context.Context, inst int64, prefix, name, sha, details, summary string) (int64, error) {
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	ext := "flare-dispatch-" + hex.EncodeToString(nonce)
	body := map[string]any{"name": name, "head_sha": sha, "status": "in_progress", "external_id": ext,
		"started_at": c.cfg.Now().UTC().Format(time.RFC3339),
		"output":     output{Title: defaultTitle(""), Summary: truncate(summary)}}
	if details != "" {
		body["details_url"] = details
	}
	var run checkRun
	err := c.do(ctx, inst, request{method: http.MethodPost, path: prefix + "check-runs", body: body, out: &run},
		func(last int) (bool, error) {
			if last != 0 && last < 500 {
				return false, nil // refused for sure (429, 403): nothing was created
			}
			var found struct {
				CheckRuns []checkRun `json:"check_runs"`
			}
			q := url.Values{"check_name": {name}, "filter": {"all"}, "per_page": {"100"}}
			if err := c.do(ctx, inst, request{method: http.MethodGet, path: prefix + "commits/" + url.PathEscape(sha) + "/check-runs", query: q, out: &found}, nil); err != nil {
				return false, nil // the create's own retry decides
			}
			for _, cr := range found.CheckRuns {
				if cr.ExternalID == ext {
					run = cr
					return true, nil
				}
			}
			return false, nil
		})
	if err != nil {
		return 0, err
	}
	return run.ID, nil
}

// updateCheckRun sends the report: with more than 50 annotations the extra batches
// go first as output-only updates, so the run completes only once all of its
// annotations are attached.
func (c *Client) updateCheckRun(ctx context.Context, inst int64, prefix string, id int64, r edge.CheckReport) error {
	conclusion := ""
	if r.Status == "completed" {
		conclusion = r.Conclusion
		switch conclusion {
		case "success", "failure", "neutral", "cancelled", "timed_out":
		default:
			return fmt.Errorf("github: check-run conclusion %q is not one of success, failure, neutral, cancelled, timed_out", conclusion)
		}
	}
	title := r.Title
	if title == "" {
		title = defaultTitle(conclusion)
	}
	summary := truncate(r.Summary)
	batches := batchesOf(r.Annotations)
	path := prefix + "check-runs/" + fmt.Sprint(id)
	for i, batch := range batches {
		patch := map[string]any{"output": output{Title: title, Summary: summary, Annotations: batch}}
		if i == len(batches)-1 { // the last request carries the state change
			if r.DetailsURL != "" {
				patch["details_url"] = r.DetailsURL
			}
			if conclusion == "" {
				patch["status"] = "in_progress"
			} else {
				patch["status"], patch["conclusion"] = "completed", conclusion
				patch["completed_at"] = c.cfg.Now().UTC().Format(time.RFC3339)
			}
		}
		if err := c.do(ctx, inst, request{method: http.MethodPatch, path: path, body: patch}, nil); err != nil {
			return fmt.Errorf("update check-run %d (request %d of %d): %w", id, i+1, len(batches), err)
		}
	}
	return nil
}

// batchesOf splits annotations into request-sized groups; always at least one
// (possibly empty) group, so an update without annotations is sent.
func batchesOf(as []edge.Annotation) [][]annotation {
	wire := make([]annotation, len(as))
	for i, a := range as {
		end, level := a.EndLine, a.Level
		if end == 0 {
			end = a.StartLine
		}
		if level == "" {
			level = "warning"
		}
		wire[i] = annotation{Path: a.Path, StartLine: a.StartLine, EndLine: end, Level: level, Title: a.Title, Message: a.Message, RawDetails: a.RawDetails}
	}
	var out [][]annotation
	for len(wire) > maxAnnotationsReq {
		out = append(out, wire[:maxAnnotationsReq])
		wire = wire[maxAnnotationsReq:]
	}
	return append(out, wire)
}
