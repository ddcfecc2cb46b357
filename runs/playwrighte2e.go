package runs

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// playwright-e2e: the repository's Playwright suite in N shards. The run fans out N
// child executions of itself (input shard = 1..N), each on a sandbox of its own: check
// out and install (cached by lockfile), run `<command> --shard i/N` with BASE_URL, and
// upload its HTML report as playwright-report-<i>. Children always report (they are
// judged by their parent); the parent merges their JSON results into one summary —
// passed, failed, flaky and skipped tests, a table of shards with their reports — and
// the failing tests as check-run annotations. Red when any test failed or any shard
// produced no results, unless reportOnly. Fired by a pull request labelled
// request-e2e (not from a bot), or dispatched.

// PlaywrightE2EInputs are playwright-e2e's inputs.
type PlaywrightE2EInputs struct {
	Repo         string            `json:"repo"`
	SHA          string            `json:"sha"`
	BaseURL      string            `json:"baseURL,omitempty"` // default: config playwright-e2e.base-url
	Shards       int               `json:"shards,omitempty"`  // default 4
	Project      string            `json:"project,omitempty"`
	Command      string            `json:"command,omitempty"` // default npx --no-install playwright test
	Env          map[string]string `json:"env,omitempty"`
	Secrets      []string          `json:"secrets,omitzero"`
	SecretPrefix string            `json:"secretPrefix,omitempty"`
	TimeoutSec   int               `json:"timeoutSec,omitempty"` // per shard; default 1200
	ReportOnly   bool              `json:"reportOnly,omitempty"`
	// Shard is set on the children: run shard Shard of Shards and report it.
	Shard int `json:"shard,omitempty"`
}

// PlaywrightTests counts tests as Playwright's JSON reporter does.
type PlaywrightTests struct {
	Passed  int `json:"passed"` // expected
	Failed  int `json:"failed"` // unexpected
	Flaky   int `json:"flaky"`
	Skipped int `json:"skipped"`
}

func (t *PlaywrightTests) add(o PlaywrightTests) {
	t.Passed += o.Passed
	t.Failed += o.Failed
	t.Flaky += o.Flaky
	t.Skipped += o.Skipped
}

// PlaywrightFailure is one failing test.
type PlaywrightFailure struct {
	Title   string `json:"title"`
	File    string `json:"file"` // repository-relative
	Line    int    `json:"line"`
	Project string `json:"project,omitempty"`
	Message string `json:"message,omitempty"`
}

// PlaywrightShard is one shard.
type PlaywrightShard struct {
	Index      int                 `json:"index"`
	Status     string              `json:"status"` // the child execution's
	ExitCode   int                 `json:"exitCode"`
	DurationMs int64               `json:"durationMs"`
	Tests      PlaywrightTests     `json:"tests"`
	Reported   bool                `json:"reported"` // a JSON report was read
	ReportURI  string              `json:"reportUri,omitempty"`
	LogURI     string              `json:"logUri,omitempty"`
	LogsURL    string              `json:"logsUrl,omitempty"`
	Execution  string              `json:"executionId,omitempty"`
	Failures   []PlaywrightFailure `json:"failures,omitempty"`
	Flaky      []string            `json:"flaky,omitempty"`
}

// PlaywrightE2EOutput is playwright-e2e's output (a child's has one shard).
type PlaywrightE2EOutput struct {
	Shards       int               `json:"shards"`
	Passed       int               `json:"passed"` // shards without failed tests
	Failed       int               `json:"failed"` // shards with failed tests or no results
	Tests        PlaywrightTests   `json:"tests"`
	ShardResults []PlaywrightShard `json:"shardResults"`
	Findings     []dsl.Finding     `json:"findings,omitempty"`
	SummaryMd    string            `json:"summaryMd"`
}

// Limits and defaults of playwright-e2e.
const (
	playwrightDefaultShards  = 4
	playwrightMaxShards      = 16
	playwrightDefaultTimeout = 1200
	playwrightDefaultCommand = "npx --no-install playwright test"
	playwrightBaseURLKey     = "playwright-e2e.base-url"
	playwrightResultsFile    = ".flare-playwright/results.json"
	maxShownFailures         = 30
)

// Default fills the defaults.
func (in *PlaywrightE2EInputs) Default() {
	if in.Secrets == nil {
		in.Secrets = []string{}
	}
	if in.Shards == 0 {
		in.Shards = playwrightDefaultShards
	}
	if in.TimeoutSec == 0 {
		in.TimeoutSec = playwrightDefaultTimeout
	}
	if in.Command == "" {
		in.Command = playwrightDefaultCommand
	}
	in.SHA = strings.ToLower(in.SHA)
}

var projectNameChars = pattern.NewSet("A-Za-z0-9_. -")

// Validate checks the inputs' values.
func (in *PlaywrightE2EInputs) Validate() error {
	base := OffloadTestInputs{Repo: in.Repo, SHA: in.SHA, Command: in.Command, Env: in.Env, Secrets: in.Secrets, TimeoutSec: in.TimeoutSec}
	if err := base.Validate(); err != nil {
		return err
	}
	if in.BaseURL != "" {
		if fe := checkHTTPURL("baseURL", in.BaseURL); fe != nil {
			return fe
		}
	}
	switch {
	case in.Shards < 1 || in.Shards > playwrightMaxShards:
		return &dsl.FieldError{Field: "shards", Message: fmt.Sprintf("must be between 1 and %d", playwrightMaxShards)}
	case in.Shard < 0 || in.Shard > in.Shards:
		return &dsl.FieldError{Field: "shard", Message: "must be between 1 and shards"}
	case in.Project != "" && !projectNameChars.Run(in.Project, 1, 64):
		return &dsl.FieldError{Field: "project", Message: "must be a Playwright project name (letters, digits, _ . - and spaces)"}
	}
	return nil
}

// PlaywrightE2E is the playwright-e2e run.
var PlaywrightE2E = dsl.Define(dsl.Spec{
	Name:        "playwright-e2e",
	Version:     "1.0.0",
	Description: "Run the repository's Playwright suite in N shards and merge their reports.",
	Pool:        dsl.PoolBrowser,
	MaxDuration: 2400 * time.Second,
	Triggers: []dsl.Trigger{{
		Event:   "pull_request",
		Actions: []string{"opened", "synchronize", "ready_for_review", "labeled"},
		Gate: func(e *dsl.WebhookEvent) bool {
			author := e.String("pull_request.user.login")
			return slices.Contains(e.Strings("pull_request.labels", "name"), "request-e2e") &&
				!strings.HasSuffix(author, "[bot]") && e.String("pull_request.user.type") != "Bot"
		},
		IdempotencyKey: func(e *dsl.WebhookEvent) string { return dsl.SemanticKey("playwright-e2e", e.Repo(), e.HeadSHA()) },
		Inputs:         func(e *dsl.WebhookEvent) any { return PlaywrightE2EInputs{Repo: e.Repo(), SHA: e.HeadSHA()} },
	}},
}, func(c *dsl.Ctx, in PlaywrightE2EInputs) (PlaywrightE2EOutput, error) {
	if in.Shard > 0 {
		return playwrightShard(c, in)
	}
	if in.BaseURL == "" {
		if c.Config != nil {
			vals, err := c.Config.Get(c, []string{playwrightBaseURLKey})
			if err == nil {
				in.BaseURL = strings.TrimSpace(vals[playwrightBaseURLKey])
			}
		}
		if in.BaseURL == "" {
			return PlaywrightE2EOutput{}, &dsl.BackendUnconfigured{Backend: "playwright-e2e", Missing: []string{playwrightBaseURLKey}}
		}
		if fe := checkHTTPURL(playwrightBaseURLKey, in.BaseURL); fe != nil {
			return PlaywrightE2EOutput{}, &dsl.StepFailed{Step: "base-url", Cause: fe.Error()}
		}
	}
	children := make([]dsl.ChildSpec, 0, in.Shards)
	for i := 1; i <= in.Shards; i++ {
		child := in
		child.Shard, child.ReportOnly = i, true
		children = append(children, dsl.ChildSpec{Key: fmt.Sprintf("shard-%d", i), Run: "playwright-e2e", Inputs: child})
	}
	results, err := dsl.RunFanOut(c, dsl.FanOut{Name: "shards", Children: children})
	if err != nil {
		return PlaywrightE2EOutput{}, err
	}
	out := PlaywrightE2EOutput{Shards: in.Shards}
	for i, r := range results {
		sh := PlaywrightShard{Index: i + 1, Status: r.Status, ExitCode: -1, DurationMs: r.DurationMs, LogsURL: r.LogsURL, Execution: r.Exec}
		var co PlaywrightE2EOutput
		if len(r.Output) > 0 && json.Unmarshal(r.Output, &co) == nil && len(co.ShardResults) == 1 {
			got := co.ShardResults[0]
			sh.ExitCode, sh.Tests, sh.Reported, sh.ReportURI, sh.LogURI, sh.Failures, sh.Flaky = got.ExitCode, got.Tests, got.Reported, got.ReportURI, got.LogURI, got.Failures, got.Flaky
			if got.DurationMs > 0 {
				sh.DurationMs = got.DurationMs
			}
		}
		out.add(sh)
	}
	out.SummaryMd = playwrightSummary(out)
	if out.Failed > 0 && !in.ReportOnly {
		return out, &dsl.AcceptanceFailed{ExitCode: 1, SummaryMd: out.SummaryMd}
	}
	return out, nil
})

// add counts a shard in.
func (o *PlaywrightE2EOutput) add(sh PlaywrightShard) {
	if sh.Reported && sh.Tests.Failed == 0 && (sh.Status == "" || sh.Status == "success") {
		o.Passed++
	} else {
		o.Failed++
	}
	o.Tests.add(sh.Tests)
	for _, f := range sh.Failures {
		o.Findings = append(o.Findings, dsl.Finding{Path: f.File, StartLine: f.Line, Level: dsl.LevelFailure,
			Title: "Playwright: " + f.Title, Message: strings.TrimSpace("Failed in shard " + strconv.Itoa(sh.Index) + ". " + f.Message)})
	}
	o.ShardResults = append(o.ShardResults, sh)
}

// playwrightShard runs one shard in this sandbox.
func playwrightShard(c *dsl.Ctx, in PlaywrightE2EInputs) (PlaywrightE2EOutput, error) {
	ws, secrets, err := checkoutWithSecrets(c, in.Repo, in.SHA, in.Secrets, in.SecretPrefix)
	if err != nil {
		return PlaywrightE2EOutput{}, err
	}
	env := mergeEnv(ws.Env, secrets, in.Env)
	results := path.Join(ws.Dir, playwrightResultsFile)
	env["BASE_URL"] = in.BaseURL
	env["PLAYWRIGHT_JSON_OUTPUT_NAME"] = results
	env["PLAYWRIGHT_HTML_OPEN"] = "never"
	env["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
	cmd := fmt.Sprintf("rm -f %s; %s --shard %d/%d --reporter=json,html", dsl.ShellQuote(results), in.Command, in.Shard, in.Shards)
	if in.Project != "" {
		cmd += " --project " + dsl.ShellQuote(in.Project)
	}
	timeout := time.Duration(in.TimeoutSec) * time.Second
	res, err := dsl.Step(c, "run-shard", func(ctx context.Context) (dsl.ExecResult, error) {
		return c.Sandbox.Exec(ctx, dsl.ExecRequest{Dir: ws.Dir, Command: cmd, Env: env, Timeout: timeout})
	}, dsl.Timeout(timeout+2*time.Minute))
	if err != nil {
		return PlaywrightE2EOutput{}, err
	}
	sh := PlaywrightShard{Index: in.Shard, Status: "", ExitCode: res.ExitCode, DurationMs: res.DurationMs, LogURI: res.LogURI}
	parsed, err := dsl.Step(c, "read-results", func(ctx context.Context) (playwrightParsed, error) {
		raw, err := c.Sandbox.ReadFile(ctx, results)
		if err != nil {
			return playwrightParsed{Error: "no JSON results: " + err.Error()}, nil
		}
		return parsePlaywrightJSON(raw, ws.Dir), nil
	})
	if err != nil {
		return PlaywrightE2EOutput{}, err
	}
	sh.Reported, sh.Tests, sh.Failures, sh.Flaky = parsed.Error == "", parsed.Tests, parsed.Failures, parsed.Flaky
	report, err := dsl.UploadArtifact(c, "upload-report", fmt.Sprintf("playwright-report-%d", in.Shard), path.Join(ws.Dir, "playwright-report"), true)
	if err != nil {
		return PlaywrightE2EOutput{}, err
	}
	sh.ReportURI = dirURL(report)
	out := PlaywrightE2EOutput{Shards: in.Shards}
	out.add(sh)
	out.SummaryMd = playwrightSummary(out)
	if parsed.Error != "" {
		out.SummaryMd += "\n\n" + mdCell(parsed.Error)
	}
	if out.Failed > 0 && !in.ReportOnly {
		return out, &dsl.AcceptanceFailed{ExitCode: max(res.ExitCode, 1), SummaryMd: out.SummaryMd}
	}
	return out, nil
}

// playwrightParsed is what a shard's JSON results said.
type playwrightParsed struct {
	Tests    PlaywrightTests     `json:"tests"`
	Failures []PlaywrightFailure `json:"failures,omitempty"`
	Flaky    []string            `json:"flaky,omitempty"`
	Error    string              `json:"error,omitempty"`
}

// The parts of Playwright's JSON reporter output read here.
type pwReport struct {
	Config struct {
		RootDir string `json:"rootDir"`
	} `json:"config"`
	Suites []pwSuite `json:"suites"`
	Stats  struct {
		Expected   int `json:"expected"`
		Unexpected int `json:"unexpected"`
		Flaky      int `json:"flaky"`
		Skipped    int `json:"skipped"`
	} `json:"stats"`
	Errors []struct {
		Message string `json:"message"`
	} `json:"errors"`
}

type pwSuite struct {
	Title  string    `json:"title"`
	File   string    `json:"file"`
	Specs  []pwSpec  `json:"specs"`
	Suites []pwSuite `json:"suites"`
}

type pwSpec struct {
	Title string `json:"title"`
	File  string `json:"file"`
	Line  int    `json:"line"`
	Tests []struct {
		ProjectName string `json:"projectName"`
		Status      string `json:"status"` // expected | unexpected | flaky | skipped
		Results     []struct {
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	} `json:"tests"`
}

// parsePlaywrightJSON reads a JSON report; test files are made relative to the
// checkout at dir so annotations land on them.
func parsePlaywrightJSON(raw []byte, dir string) playwrightParsed {
	var r pwReport
	if err := json.Unmarshal(raw, &r); err != nil {
		return playwrightParsed{Error: "the JSON results do not parse: " + err.Error()}
	}
	p := playwrightParsed{Tests: PlaywrightTests{Passed: r.Stats.Expected, Failed: r.Stats.Unexpected, Flaky: r.Stats.Flaky, Skipped: r.Stats.Skipped}}
	rel := strings.TrimPrefix(strings.TrimPrefix(r.Config.RootDir, strings.TrimRight(dir, "/")), "/")
	if path.IsAbs(rel) {
		rel = "" // a rootDir outside the checkout: paths stay relative to it
	}
	var walk func(s pwSuite, titles []string)
	walk = func(s pwSuite, titles []string) {
		if s.Title != "" && s.Title != s.File {
			titles = append(titles, s.Title)
		}
		for _, sp := range s.Specs {
			name := strings.Join(append(slices.Clone(titles), sp.Title), " › ")
			for _, t := range sp.Tests {
				switch t.Status {
				case "unexpected":
					f := PlaywrightFailure{Title: name, File: path.Join(rel, sp.File), Line: sp.Line, Project: t.ProjectName}
					for _, res := range t.Results {
						if res.Error != nil && res.Error.Message != "" {
							f.Message = stripANSI(res.Error.Message)
						}
					}
					if len(f.Message) > 2000 {
						f.Message = f.Message[:2000] + "…"
					}
					p.Failures = append(p.Failures, f)
				case "flaky":
					p.Flaky = append(p.Flaky, name)
				}
			}
		}
		for _, sub := range s.Suites {
			walk(sub, titles)
		}
	}
	for _, s := range r.Suites {
		walk(s, nil)
	}
	if len(r.Errors) > 0 && p.Tests.Failed == 0 {
		// Errors outside tests (a config that does not load, a file that does not compile).
		p.Tests.Failed = len(r.Errors)
		for _, e := range r.Errors {
			p.Failures = append(p.Failures, PlaywrightFailure{Title: "error outside tests", Message: stripANSI(e.Message)})
		}
	}
	return p
}

func playwrightSummary(o PlaywrightE2EOutput) string {
	var b strings.Builder
	t := o.Tests
	fmt.Fprintf(&b, "**Playwright: %d passed, %d failed, %d flaky, %d skipped** in %s\n\n", t.Passed, t.Failed, t.Flaky, t.Skipped, plural(o.Shards, "shard"))
	b.WriteString("| Shard | Result | Passed | Failed | Flaky | Report | Logs |\n|---:|---|---:|---:|---:|---|---|\n")
	for _, s := range o.ShardResults {
		result := "✅ passed"
		switch {
		case s.Status != "" && s.Status != "success":
			result = "❌ " + strings.ReplaceAll(s.Status, "_", " ")
		case !s.Reported:
			result = "❌ no results"
		case s.Tests.Failed > 0:
			result = "❌ failed"
		}
		report := "—"
		if s.ReportURI != "" {
			report = "[playwright-report-" + strconv.Itoa(s.Index) + "](" + s.ReportURI + ")"
		}
		logs := "—"
		if s.LogsURL != "" {
			logs = "[logs](" + s.LogsURL + ")"
		}
		fmt.Fprintf(&b, "| %d/%d | %s | %d | %d | %d | %s | %s |\n", s.Index, o.Shards, result, s.Tests.Passed, s.Tests.Failed, s.Tests.Flaky, report, logs)
	}
	var failures []string
	var flaky []string
	for _, s := range o.ShardResults {
		for _, f := range s.Failures {
			loc := ""
			if f.File != "" {
				loc = fmt.Sprintf(" (`%s:%d`)", mdCell(f.File), f.Line)
			}
			failures = append(failures, "- ❌ "+mdCell(f.Title)+loc)
		}
		for _, f := range s.Flaky {
			flaky = append(flaky, "- ⚠️ "+mdCell(f))
		}
	}
	if len(failures) > 0 {
		b.WriteString("\n**Failed tests**\n\n")
		if len(failures) > maxShownFailures {
			failures = append(failures[:maxShownFailures], fmt.Sprintf("- … and %d more (see the annotations)", len(failures)-maxShownFailures))
		}
		b.WriteString(strings.Join(failures, "\n") + "\n")
	}
	if len(flaky) > 0 {
		b.WriteString("\n**Flaky tests** (passed on retry)\n\n" + strings.Join(flaky, "\n") + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
