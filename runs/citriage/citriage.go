// Package citriage is the logic of the ci-triage-pr run without I/O: the failed CI
// runs of a window go to a model, whose triage becomes a dated report file proposed
// as a draft pull request. No failures means no model call and no pull request.
package citriage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Marker ends the pull request's body.
const Marker = "<!-- flare-dispatch: ci-triage-pr -->"

// MaxTokens is the triage call's output budget.
const MaxTokens = 3072

// Failure is one failed workflow run (or deployment) of the window.
type Failure struct {
	Repo       string    `json:"repo"`
	Source     string    `json:"source"` // actions | deployment
	Name       string    `json:"name"`   // workflow or project name
	Branch     string    `json:"branch,omitempty"`
	SHA        string    `json:"sha,omitempty"`
	URL        string    `json:"url,omitempty"`
	Conclusion string    `json:"conclusion"`
	At         time.Time `json:"at"`
	Detail     string    `json:"detail,omitempty"` // failing jobs/steps, log tail
}

// InWindow keeps the failures that ended within window before now, newest first.
func InWindow(fs []Failure, now time.Time, window time.Duration) []Failure {
	var out []Failure
	for _, f := range fs {
		if !f.At.Before(now.Add(-window)) && !f.At.After(now) {
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(a, b Failure) int { return b.At.Compare(a.At) })
	return out
}

// Item is one triaged problem.
type Item struct {
	Title        string `json:"title"`
	Area         string `json:"area"`
	Diagnosis    string `json:"diagnosis"`
	SuggestedFix string `json:"suggestedFix"`
}

// Triage is the model's report.
type Triage struct {
	Summary string `json:"summary"`
	Items   []Item `json:"items"`
}

// Schema is the report_triage tool's JSON Schema.
var Schema = json.RawMessage(`{"type":"object","required":["summary","items"],"properties":{"summary":{"type":"string"},` +
	`"items":{"type":"array","items":{"type":"object","required":["title","area","diagnosis","suggestedFix"],"properties":{` +
	`"title":{"type":"string"},"area":{"type":"string"},"diagnosis":{"type":"string"},"suggestedFix":{"type":"string"}}}}}}`)

// DefaultPrompt is the system prompt (CONFIG_KV ci-triage.prompt replaces it).
const DefaultPrompt = "You triage CI failures. Group failures with the same cause, say what most likely broke and where, " +
	"and propose the smallest fix. Separate flaky infrastructure from real regressions. " +
	"Call the `report_triage` tool once."

// maxDetail bounds each failure's detail in the prompt.
const maxDetail = 4000

// Prompt is the user message listing the failures.
func Prompt(fs []Failure) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d failed CI run(s):\n", len(fs))
	for i, f := range fs {
		fmt.Fprintf(&b, "\n## %d. %s %s — %s (%s)\nrepo %s, branch %s, commit %s, at %s\n%s\n", i+1, f.Source, f.Name, f.Conclusion,
			f.URL, f.Repo, f.Branch, short(f.SHA), f.At.UTC().Format(time.RFC3339), clip(f.Detail, maxDetail))
	}
	return b.String()
}

// Ask calls the model once with the failures. It must not be called without any: the
// run checks first, so a quiet day costs nothing.
func Ask(ctx context.Context, m dsl.ModelGateway, base dsl.ModelRequest, system string, fs []Failure) (Triage, dsl.ModelResponse, error) {
	if len(fs) == 0 {
		return Triage{}, dsl.ModelResponse{}, fmt.Errorf("citriage: no failures to triage")
	}
	req := base
	req.System = system
	if strings.TrimSpace(req.System) == "" {
		req.System = DefaultPrompt
	}
	req.User = Prompt(fs)
	req.MaxTokens = max(req.MaxTokens, 0)
	if req.MaxTokens == 0 {
		req.MaxTokens = MaxTokens
	}
	req.Tools = []dsl.ModelTool{{Name: "report_triage", Description: "Report the triage.", Schema: Schema}}
	resp, err := m.Complete(ctx, req)
	if err != nil {
		return Triage{}, resp, err
	}
	for _, tc := range resp.ToolCalls {
		if tc.Name == "report_triage" {
			var t Triage
			if err := json.Unmarshal(tc.Arguments, &t); err != nil {
				return Triage{}, resp, &dsl.StructuredOutputInvalid{Surface: "report_triage", Reason: err.Error()}
			}
			return t, resp, nil
		}
	}
	return Triage{}, resp, &dsl.StructuredOutputInvalid{Surface: "report_triage", Reason: "the model did not call report_triage"}
}

// Branch, Title and File name the day's pull request; a rerun the same day finds the
// same branch and updates its pull request.
func Branch(day string) string { return "flare-dispatch/ci-triage-" + day }

// Title is the pull request's title.
func Title(day string) string { return "chore(ci): triage " + day + " CI failures" }

// File is the report's path in the repository.
func File(day string) string { return ".flare-dispatch/ci-triage-" + day + ".md" }

// Report is the report file (and the pull request's body).
func Report(day string, t Triage, fs []Failure) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# CI triage — %s\n\n%s\n\n", day, oneParagraph(t.Summary))
	for i, it := range t.Items {
		fmt.Fprintf(&b, "## %d. %s\n\n- **Area:** %s\n- **Diagnosis:** %s\n- **Suggested fix:** %s\n\n", i+1, oneLine(it.Title),
			oneLine(it.Area), oneParagraph(it.Diagnosis), oneParagraph(it.SuggestedFix))
	}
	b.WriteString("## Failed runs\n\n| Repository | Source | Name | Branch | When |\n|---|---|---|---|---|\n")
	for _, f := range fs {
		name := oneLine(f.Name)
		if f.URL != "" {
			name = "[" + name + "](" + f.URL + ")"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Repo, f.Source, name, oneLine(f.Branch), f.At.UTC().Format("15:04 UTC"))
	}
	return b.String()
}

// oneLine keeps model text on its line and out of HTML and mentions.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "|", `\|`, "@", "@\u200b").Replace(s)
}

func oneParagraph(s string) string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		lines = append(lines, oneLine(l))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
