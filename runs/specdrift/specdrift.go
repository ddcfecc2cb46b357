// Package specdrift is the logic of the spec-drift-pr run without I/O: a repository's
// specs, file tree and recent history go to a model, which proposes spec edits; the
// edits that stay inside specs/ become a draft pull request. No edits, no pull request.
package specdrift

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Marker ends the pull request's body.
const Marker = "<!-- flare-dispatch: spec-drift-pr -->"

// Limits of what is sent (contract §4).
const (
	MaxSpecChars = 40000
	MaxTreeChars = 12000
	MaxTreeFiles = 800
	LogCommits   = 25
	MaxTokens    = 4096
)

// Commands the run executes in its checkout.
const (
	SpecsCommand = "git ls-files -- 'specs/*.md' 'specs/**/*.md'"
	TreeCommand  = "git ls-files | head -800"
	LogCommand   = "git log --oneline -n 25"
)

// File is one spec.
type File struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// Context is what the model reads.
type Context struct {
	Specs []File
	Tree  string
	Log   string
}

// Gather joins the specs with ===FILE <path>=== delimiters, at most MaxSpecChars
// (the rest is named, not sent).
func Gather(specs []File) string {
	var b strings.Builder
	var left []string
	for _, f := range specs {
		block := "===FILE " + f.Path + "===\n" + f.Content + "\n"
		if b.Len()+len(block) > MaxSpecChars {
			left = append(left, f.Path)
			continue
		}
		b.WriteString(block)
	}
	if len(left) > 0 {
		fmt.Fprintf(&b, "\n(not included, over the size limit: %s)\n", strings.Join(left, ", "))
	}
	return b.String()
}

// Edit is one proposed spec change.
type Edit struct {
	Path       string `json:"path"`
	NewContent string `json:"newContent"`
	Rationale  string `json:"rationale"`
}

// Proposal is the model's answer.
type Proposal struct {
	Summary string `json:"summary"`
	Edits   []Edit `json:"edits"`
}

// Schema is the propose_spec_edits tool's JSON Schema.
var Schema = json.RawMessage(`{"type":"object","required":["summary","edits"],"properties":{"summary":{"type":"string"},` +
	`"edits":{"type":"array","items":{"type":"object","required":["path","newContent","rationale"],"properties":{` +
	`"path":{"type":"string","description":"an existing or new file under specs/, ending in .md"},` +
	`"newContent":{"type":"string","description":"the whole new content of the file"},"rationale":{"type":"string"}}}}}}`)

// DefaultPrompt is the system prompt (CONFIG_KV spec-drift.prompt replaces it).
const DefaultPrompt = "You keep a repository's specs true to its code. Compare the specs with the file tree and the recent " +
	"commits, and propose edits only where a spec is now wrong or silent about something that shipped. Do not restyle " +
	"or reword what is still true. Call the `propose_spec_edits` tool once, with no edits when nothing drifted."

// Ask calls the model once.
func Ask(ctx context.Context, m dsl.ModelGateway, base dsl.ModelRequest, system string, c Context) (Proposal, dsl.ModelResponse, error) {
	req := base
	req.System = system
	if strings.TrimSpace(req.System) == "" {
		req.System = DefaultPrompt
	}
	if req.MaxTokens == 0 {
		req.MaxTokens = MaxTokens
	}
	req.User = "# Specs\n\n" + Gather(c.Specs) + "\n# File tree\n\n" + clip(c.Tree, MaxTreeChars) + "\n\n# Recent commits\n\n" + c.Log
	req.Tools = []dsl.ModelTool{{Name: "propose_spec_edits", Description: "Propose spec edits.", Schema: Schema}}
	resp, err := m.Complete(ctx, req)
	if err != nil {
		return Proposal{}, resp, err
	}
	for _, tc := range resp.ToolCalls {
		if tc.Name == "propose_spec_edits" {
			var p Proposal
			if err := json.Unmarshal(tc.Arguments, &p); err != nil {
				return Proposal{}, resp, &dsl.StructuredOutputInvalid{Surface: "propose_spec_edits", Reason: err.Error()}
			}
			return p, resp, nil
		}
	}
	return Proposal{}, resp, &dsl.StructuredOutputInvalid{Surface: "propose_spec_edits", Reason: "the model did not call propose_spec_edits"}
}

// Changes are the edits worth committing: under specs/, markdown, not escaping the
// directory, not empty, and different from what is there. Refused paths are returned
// so the pull request can say what was dropped.
func Changes(p Proposal, current []File) (changes []dsl.FileChange, refused []string) {
	have := map[string]string{}
	for _, f := range current {
		have[f.Path] = f.Content
	}
	seen := map[string]bool{}
	for _, e := range p.Edits {
		clean := path.Clean(strings.TrimPrefix(e.Path, "./"))
		switch {
		case clean != e.Path && clean != strings.TrimPrefix(e.Path, "./"), !strings.HasPrefix(clean, "specs/"),
			!strings.HasSuffix(clean, ".md"), strings.Contains(clean, ".."), strings.TrimSpace(e.NewContent) == "", seen[clean]:
			refused = append(refused, e.Path)
			continue
		}
		seen[clean] = true
		content := strings.TrimRight(e.NewContent, "\n") + "\n"
		if content == have[clean] {
			continue
		}
		changes = append(changes, dsl.FileChange{Path: clean, Content: content})
	}
	slices.SortFunc(changes, func(a, b dsl.FileChange) int { return strings.Compare(a.Path, b.Path) })
	return changes, refused
}

// Branch is the day's branch; a rerun the same day updates its pull request.
func Branch(day string) string { return "flare-dispatch/spec-drift-" + day }

// Title is the pull request's title.
func Title(day string) string { return "docs(specs): reconcile spec drift (" + day + ")" }

// Body is the pull request's body.
func Body(p Proposal, changes []dsl.FileChange, refused []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", oneParagraph(p.Summary))
	why := map[string]string{}
	for _, e := range p.Edits {
		why[path.Clean(e.Path)] = e.Rationale
	}
	for _, c := range changes {
		fmt.Fprintf(&b, "- `%s`: %s\n", c.Path, oneLine(why[c.Path]))
	}
	if len(refused) > 0 {
		fmt.Fprintf(&b, "\n_Dropped edits outside specs/*.md: %d._\n", len(refused))
	}
	return b.String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.NewReplacer("<", "&lt;", ">", "&gt;", "`", "'", "@", "@\u200b").Replace(s)
}

func oneParagraph(s string) string {
	var lines []string
	for l := range strings.SplitSeq(s, "\n") {
		lines = append(lines, oneLine(l))
	}
	return strings.TrimSpace(strings.Join(lines, "\n"))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "\n…(tree truncated)"
}
