package prreview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Reviewers.
const (
	Security          = "security"
	Performance       = "performance"
	CodeQuality       = "code-quality"
	Documentation     = "documentation"
	ReleaseManagement = "release-management"
	Compliance        = "compliance"
	AgentsMD          = "agents-md"
	General           = "general" // the single reviewer
)

// Personas are the seven reviewers of multi mode, in the order they are shown.
var Personas = []string{Security, Performance, CodeQuality, Documentation, ReleaseManagement, Compliance, AgentsMD}

var personaFocus = map[string]string{
	Security:          "security: injection, authentication and authorization, secrets in code or logs, unsafe deserialisation, SSRF, path traversal, missing input validation, crypto misuse",
	Performance:       "performance: algorithmic complexity, needless allocations or copies, N+1 queries, blocking calls on hot paths, unbounded growth, missing timeouts",
	CodeQuality:       "code quality: correctness bugs, error handling, edge cases, races, dead code, naming and structure that hide intent",
	Documentation:     "documentation: public APIs without comments, comments that no longer match the code, README/spec updates the change needs",
	ReleaseManagement: "release management: breaking changes to APIs, wire formats, configuration or migrations; missing changelog or versioning; rollout and rollback risk",
	Compliance:        "compliance: licences of added code or dependencies, personal data handling, audit logging, retention",
	AgentsMD:          "instructions for AI agents (AGENTS.md, CLAUDE.md, .cursor rules): whether the change contradicts or should update them",
	General:           "correctness, security, performance and maintainability",
}

// Agents are the reviewers for a tier: trivial → code-quality; lite → security,
// code-quality, performance, documentation; full → all seven. Single mode is one
// general reviewer whatever the tier.
func Agents(tier, mode string) []string {
	if mode == "single" {
		return []string{General}
	}
	switch tier {
	case TierTrivial:
		return []string{CodeQuality}
	case TierLite:
		return []string{Security, CodeQuality, Performance, Documentation}
	}
	return slices.Clone(Personas)
}

// Finding levels map the severities shown.
const (
	LevelFailure = dsl.LevelFailure // 🛑 critical
	LevelWarning = dsl.LevelWarning // ⚠️ warning
	LevelNotice  = dsl.LevelNotice  // 💡 suggestion
)

// Finding is one reviewer's finding.
type Finding struct {
	Level     string `json:"level"`
	Title     string `json:"title"`
	Message   string `json:"message"`
	Path      string `json:"path"`
	StartLine int    `json:"startLine"`
	EndLine   int    `json:"endLine,omitempty"`
	Agent     string `json:"agent,omitempty"`
	// Status on a re-review: open (carried from the last review), new, or resolved.
	Status string `json:"status,omitempty"`
}

// Finding statuses on a re-review.
const (
	StatusOpen     = "open"
	StatusNew      = "new"
	StatusResolved = "resolved"
)

// ReportSchema is the JSON Schema of the report tool every reviewer calls.
var ReportSchema = json.RawMessage(`{"type":"object","required":["findings"],"properties":{"findings":{"type":"array","items":{"type":"object",` +
	`"required":["level","title","message","path","startLine"],"properties":{` +
	`"level":{"type":"string","enum":["failure","warning","notice"],"description":"failure = must fix before merge; warning = should fix; notice = suggestion"},` +
	`"title":{"type":"string","description":"one line: the change required"},` +
	`"message":{"type":"string","description":"why, and how to fix it"},` +
	`"path":{"type":"string","description":"file path as in the diff's +++ b/ header"},` +
	`"startLine":{"type":"integer","minimum":1,"description":"line in the new version of the file"},` +
	`"endLine":{"type":"integer","minimum":1}}}}}}`)

// DefaultPrompt is the base system prompt (CONFIG_KV pr-review.prompt replaces it).
const DefaultPrompt = "You are a focused code reviewer. Review only the changes in the unified diff you are given, " +
	"and only for your area. Report each problem once, at the line of the new version it concerns, with a concrete fix. " +
	"Do not praise, do not restate the diff, and report nothing when there is nothing worth changing. " +
	"Call the `report` tool exactly once with all your findings (an empty list when there are none)."

// Prompt is what shapes every reviewer's system prompt.
type Prompt struct {
	Base       string // "" = DefaultPrompt
	Guidelines string // house rules (pr-review.guidelines)
	Focus      string // the dispatch's focusArea
}

// System is the system prompt of one reviewer.
func (p Prompt) System(agent string) string {
	var b strings.Builder
	b.WriteString(cmp(p.Base, DefaultPrompt))
	fmt.Fprintf(&b, "\n\nYour area: %s.", personaFocus[agent])
	if g := strings.TrimSpace(p.Guidelines); g != "" {
		b.WriteString("\n\nAdditional review guidelines — treat these as authoritative house rules:\n" + g)
	}
	if f := strings.TrimSpace(p.Focus); f != "" {
		b.WriteString("\n\nExtra focus for this review: " + f)
	}
	return b.String()
}

func cmp(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}

// AgentResult is one reviewer's outcome.
type AgentResult struct {
	Agent        string    `json:"agent"`
	Findings     []Finding `json:"findings"`
	Failed       string    `json:"failed,omitempty"` // why the reviewer produced nothing
	InputTokens  int       `json:"inputTokens"`
	OutputTokens int       `json:"outputTokens"`
	Truncated    bool      `json:"truncated,omitempty"` // the diff was halved to fit this reviewer's context
}

// Reviews is what every reviewer said.
type Reviews struct {
	Agents       []AgentResult `json:"agents"`
	InputTokens  int           `json:"inputTokens"`
	OutputTokens int           `json:"outputTokens"`
	Calls        int           `json:"calls"`
}

// maxHalvings bounds how often a reviewer's diff is halved on context overflow.
const maxHalvings = 2

// Review asks every agent, in parallel, to review diff. base carries the model (and
// its limits); each reviewer's call sets System, User and Tools. A reviewer whose
// context overflows retries on half the diff (with the marker), at most twice. Review
// fails only when every reviewer failed; otherwise failures are recorded per agent.
func Review(ctx context.Context, m dsl.ModelGateway, base dsl.ModelRequest, agents []string, prompt Prompt, diff string) (Reviews, error) {
	results := make([]AgentResult, len(agents))
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, agent := range agents {
		wg.Go(func() {
			results[i], errs[i] = reviewOne(ctx, m, base, agent, prompt, diff)
		})
	}
	wg.Wait()
	var out Reviews
	failed := 0
	for i, r := range results {
		if errs[i] != nil {
			failed++
			r.Failed = errs[i].Error()
		}
		out.Agents = append(out.Agents, r)
		out.InputTokens += r.InputTokens
		out.OutputTokens += r.OutputTokens
	}
	out.Calls = len(agents)
	if failed == len(agents) && len(agents) > 0 {
		return out, errs[0]
	}
	return out, nil
}

func reviewOne(ctx context.Context, m dsl.ModelGateway, base dsl.ModelRequest, agent string, prompt Prompt, diff string) (AgentResult, error) {
	res := AgentResult{Agent: agent}
	for halvings := 0; ; halvings++ {
		req := base
		req.System = prompt.System(agent)
		req.User = "Review this pull request diff.\n\n```diff\n" + diff + "\n```"
		req.Tools = []dsl.ModelTool{{Name: "report", Description: "Report your review findings.", Schema: ReportSchema}}
		resp, err := m.Complete(ctx, req)
		res.InputTokens += resp.InputTokens
		res.OutputTokens += resp.OutputTokens
		var mf *dsl.ModelCallFailed
		if errors.As(err, &mf) && mf.Reason == "context-overflow" && halvings < maxHalvings && len(diff) > 500 {
			diff, _ = Cap(diff, len(diff)/2)
			res.Truncated = true
			continue
		}
		if err != nil {
			return res, err
		}
		fs, err := decodeFindings(resp)
		if err != nil {
			return res, err
		}
		for i := range fs {
			fs[i].Agent = agent
		}
		res.Findings = fs
		return res, nil
	}
}

// decodeFindings reads the report tool's arguments. Levels outside the schema become
// notices (a model cannot raise the verdict with a word the schema does not have);
// findings without a title or message are dropped.
func decodeFindings(resp dsl.ModelResponse) ([]Finding, error) {
	for _, tc := range resp.ToolCalls {
		if tc.Name != "report" {
			continue
		}
		var args struct {
			Findings []struct {
				Level     string          `json:"level"`
				Title     string          `json:"title"`
				Message   string          `json:"message"`
				Path      string          `json:"path"`
				StartLine json.RawMessage `json:"startLine"`
				EndLine   json.RawMessage `json:"endLine"`
			} `json:"findings"`
		}
		if err := json.Unmarshal(tc.Arguments, &args); err != nil {
			return nil, &dsl.StructuredOutputInvalid{Surface: "report", Reason: err.Error()}
		}
		var out []Finding
		for _, f := range args.Findings {
			if strings.TrimSpace(f.Title) == "" && strings.TrimSpace(f.Message) == "" {
				continue
			}
			level := strings.ToLower(strings.TrimSpace(f.Level))
			switch level {
			case LevelFailure, LevelWarning, LevelNotice:
			case "critical", "error", "high":
				level = LevelFailure
			case "warn", "medium":
				level = LevelWarning
			default:
				level = LevelNotice
			}
			start, end := lineNumber(f.StartLine), lineNumber(f.EndLine)
			if end < start {
				end = 0
			}
			out = append(out, Finding{Level: level, Title: f.Title, Message: f.Message, Path: strings.TrimPrefix(f.Path, "b/"),
				StartLine: start, EndLine: end})
		}
		return out, nil
	}
	return nil, &dsl.StructuredOutputInvalid{Surface: "report", Reason: "the model did not call the report tool"}
}

// lineNumber reads a line number that a model may send as a number or a string.
func lineNumber(raw json.RawMessage) int {
	var n float64
	if json.Unmarshal(raw, &n) == nil && n > 0 && n < 1e7 {
		return int(n)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if i, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && i > 0 {
			return i
		}
	}
	return 0
}
