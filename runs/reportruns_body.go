//go:build !(js && wasm)

package runs

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs/citriage"
	"github.com/flare-dispatch/flare-dispatch/runs/modelcfg"
	"github.com/flare-dispatch/flare-dispatch/runs/specdrift"
)

// The report runs' bodies: only agents execute them (see agentic_worker.go).

// reportSettings are a report run's CONFIG_KV settings.
type reportSettings struct {
	Repos       []string          `json:"repos"`
	ReportRepo  string            `json:"reportRepo,omitempty"`
	Base        string            `json:"base,omitempty"`
	WindowHours int               `json:"windowHours"`
	Prompt      string            `json:"prompt,omitempty"`
	Backend     modelcfg.Resolved `json:"backend"`
	BackendErr  *dsl.Failure      `json:"backendErr,omitempty"` // resolved lazily: a quiet day needs no backend
	Day         string            `json:"day"`
}

func loadReportSettings(ctx context.Context, c *dsl.Ctx, ns string, in ReportRunInputs) (reportSettings, error) {
	s := reportSettings{WindowHours: 24}
	var v map[string]string
	if c.Config != nil {
		var err error
		if v, err = c.Config.Get(ctx, []string{ns + ".repos", ns + ".report-repo", ns + ".base", ns + ".window-hours", ns + ".prompt"}); err != nil {
			return s, err
		}
	}
	s.Repos = strings.FieldsFunc(v[ns+".repos"], func(r rune) bool { return r == ',' || r == ' ' || r == '\n' })
	if in.Repo != "" {
		s.Repos = []string{in.Repo}
	}
	s.ReportRepo, s.Base, s.Prompt = strings.TrimSpace(v[ns+".report-repo"]), strings.TrimSpace(v[ns+".base"]), v[ns+".prompt"]
	if s.ReportRepo == "" && len(s.Repos) > 0 {
		s.ReportRepo = s.Repos[0]
	}
	if n, err := strconv.Atoi(v[ns+".window-hours"]); err == nil && n > 0 {
		s.WindowHours = min(n, 24*14)
	}
	if in.WindowHours > 0 {
		s.WindowHours = in.WindowHours
	}
	at := in.FiredAt
	if at.IsZero() {
		at = c.IO.Now()
	}
	s.Day = at.UTC().Format("2006-01-02")
	b, err := modelcfg.Load(ctx, c.Config, ns, modelcfg.Overrides{})
	if err != nil {
		var t dsl.TypedError
		if !errors.As(err, &t) {
			return s, err
		}
		f := t.Failure()
		s.BackendErr = &f
	}
	s.Backend = b
	return s, nil
}

func runCITriage(c *dsl.Ctx, in ReportRunInputs) (CITriageOutput, error) {
	s, err := dsl.Step(c, "settings", func(ctx context.Context) (reportSettings, error) { return loadReportSettings(ctx, c, "ci-triage", in) })
	if err != nil {
		return CITriageOutput{}, err
	}
	out := CITriageOutput{ReposScanned: len(s.Repos)}
	if len(s.Repos) == 0 {
		logOf(c).Warn("ci-triage-pr: no repositories (set ci-triage.repos in CONFIG_KV)")
		return out, nil
	}
	if c.CI == nil {
		return out, &dsl.StepFailed{Step: "collect", Cause: "this platform cannot read workflow runs"}
	}
	var failures []citriage.Failure
	var tokens dsl.ModelResponse
	outcome, err := dsl.RunReportPR(c, dsl.ReportPR{Repo: s.ReportRepo, BaseBranch: s.Base, HeadBranch: citriage.Branch(s.Day),
		Title: citriage.Title(s.Day), Marker: citriage.Marker}, func(c *dsl.Ctx) (dsl.Report, error) {
		var err error
		failures, err = dsl.Step(c, "collect", func(ctx context.Context) ([]citriage.Failure, error) {
			end, _ := time.Parse("2006-01-02", s.Day)
			now := in.FiredAt
			if now.IsZero() {
				now = end.Add(24*time.Hour - time.Second)
				if t := c.IO.Now(); t.Before(now) {
					now = t
				}
			}
			since := now.Add(-time.Duration(s.WindowHours) * time.Hour)
			var all []citriage.Failure
			for _, repo := range s.Repos {
				runs, err := c.CI.FailedRuns(ctx, repo, since)
				if err != nil {
					return nil, err
				}
				for _, r := range runs {
					all = append(all, citriage.Failure{Repo: repo, Source: "actions", Name: r.Name, Branch: r.Branch, SHA: r.SHA,
						URL: r.URL, Conclusion: r.Conclusion, At: r.UpdatedAt})
				}
			}
			return citriage.InWindow(all, now, time.Duration(s.WindowHours)*time.Hour), nil
		}, dsl.Retries(2))
		if err != nil || len(failures) == 0 {
			return dsl.Report{}, err // no failures: no model call, no pull request
		}
		if s.BackendErr != nil {
			return dsl.Report{}, dsl.FromFailure(*s.BackendErr)
		}
		if c.Model == nil {
			return dsl.Report{}, &dsl.StepFailed{Step: "triage", Cause: "this platform offers no model gateway"}
		}
		type triaged struct {
			Triage citriage.Triage   `json:"triage"`
			Usage  dsl.ModelResponse `json:"usage"`
		}
		t, err := dsl.Step(c, "triage", func(ctx context.Context) (triaged, error) {
			tr, resp, err := citriage.Ask(ctx, c.Model, s.Backend.Request(), s.Prompt, failures)
			return triaged{Triage: tr, Usage: dsl.ModelResponse{InputTokens: resp.InputTokens, OutputTokens: resp.OutputTokens}},
				modelcfg.Unconfigured("ci-triage", err)
		})
		if err != nil {
			return dsl.Report{}, err
		}
		tokens = t.Usage
		report := citriage.Report(s.Day, t.Triage, failures)
		return dsl.Report{Body: report, Files: []dsl.FileChange{{Path: citriage.File(s.Day), Content: report}}}, nil
	})
	out.ActionsFailures = len(failures)
	out.InputTokens, out.OutputTokens = tokens.InputTokens, tokens.OutputTokens
	if err != nil {
		return out, err
	}
	if outcome.Opened {
		out.PRNumber, out.PRURL = outcome.PR.Number, outcome.PR.URL
		out.PROpened, out.PRUpdated = outcome.PR.Created, !outcome.PR.Created
	}
	return out, nil
}

func runSpecDrift(c *dsl.Ctx, in ReportRunInputs) (SpecDriftOutput, error) {
	s, err := dsl.Step(c, "settings", func(ctx context.Context) (reportSettings, error) { return loadReportSettings(ctx, c, "spec-drift", in) })
	if err != nil {
		return SpecDriftOutput{}, err
	}
	out := SpecDriftOutput{ReposScanned: len(s.Repos)}
	if len(s.Repos) == 0 {
		logOf(c).Warn("spec-drift-pr: no repositories (set spec-drift.repos in CONFIG_KV)")
		return out, nil
	}
	for _, repo := range s.Repos {
		opened, clean, usage, err := specDriftRepo(c, s, repo)
		out.InputTokens += usage.InputTokens
		out.OutputTokens += usage.OutputTokens
		switch {
		case err != nil:
			if c.Err() != nil {
				return out, err
			}
			// One repository's failure is logged and skipped; the others go on.
			logOf(c).Warn("spec-drift-pr: repository skipped", "repo", repo, "err", err)
			out.Failed = append(out.Failed, repo)
		case clean:
			out.ReposClean++
		case opened.PR.Created:
			out.PRsOpened++
		case opened.Opened:
			out.PRsUpdated++
		}
	}
	if len(out.Failed) == len(s.Repos) {
		return out, &dsl.StepFailed{Step: "spec-drift", Cause: "every repository failed: " + strings.Join(out.Failed, ", ")}
	}
	return out, nil
}

func specDriftRepo(c *dsl.Ctx, s reportSettings, repo string) (dsl.ReportPROutcome, bool, dsl.ModelResponse, error) {
	key := stepKey(repo)
	var usage dsl.ModelResponse
	clean := false
	outcome, err := dsl.RunReportPR(c, dsl.ReportPR{Repo: repo, BaseBranch: s.Base, HeadBranch: specdrift.Branch(s.Day),
		Title: specdrift.Title(s.Day), Marker: specdrift.Marker, Step: "open-pr-" + key}, func(c *dsl.Ctx) (dsl.Report, error) {
		type gathered struct {
			Context specdrift.Context `json:"context"`
		}
		g, err := dsl.Step(c, "gather-"+key, func(ctx context.Context) (gathered, error) {
			sha := "HEAD"
			if s.Base != "" {
				sha = s.Base
			}
			dir, err := c.Sandbox.Checkout(ctx, repo, sha)
			if err != nil {
				return gathered{}, err
			}
			list, err := gitOutput(ctx, c.Sandbox, dir, specdrift.SpecsCommand)
			if err != nil {
				return gathered{}, err
			}
			var gc specdrift.Context
			size := 0
			for _, p := range strings.Fields(list) {
				b, err := c.Sandbox.ReadFile(ctx, dir+"/"+p)
				if err != nil {
					return gathered{}, err
				}
				if size += len(b); size > 2*specdrift.MaxSpecChars {
					break
				}
				gc.Specs = append(gc.Specs, specdrift.File{Path: p, Content: string(b)})
			}
			if len(gc.Specs) == 0 {
				return gathered{Context: gc}, nil
			}
			if gc.Tree, err = gitOutput(ctx, c.Sandbox, dir, specdrift.TreeCommand); err != nil {
				return gathered{}, err
			}
			if gc.Log, err = gitOutput(ctx, c.Sandbox, dir, specdrift.LogCommand); err != nil {
				return gathered{}, err
			}
			return gathered{Context: gc}, nil
		}, dsl.Retries(1))
		if err != nil {
			return dsl.Report{}, err
		}
		if len(g.Context.Specs) == 0 {
			clean = true // no specs: nothing can drift
			return dsl.Report{}, nil
		}
		if s.BackendErr != nil {
			return dsl.Report{}, dsl.FromFailure(*s.BackendErr)
		}
		if c.Model == nil {
			return dsl.Report{}, &dsl.StepFailed{Step: "detect-" + key, Cause: "this platform offers no model gateway"}
		}
		type detected struct {
			Proposal specdrift.Proposal `json:"proposal"`
			Usage    dsl.ModelResponse  `json:"usage"`
		}
		d, err := dsl.Step(c, "detect-"+key, func(ctx context.Context) (detected, error) {
			p, resp, err := specdrift.Ask(ctx, c.Model, s.Backend.Request(), s.Prompt, g.Context)
			return detected{Proposal: p, Usage: dsl.ModelResponse{InputTokens: resp.InputTokens, OutputTokens: resp.OutputTokens}},
				modelcfg.Unconfigured("spec-drift", err)
		})
		if err != nil {
			return dsl.Report{}, err
		}
		usage = d.Usage
		changes, refused := specdrift.Changes(d.Proposal, g.Context.Specs)
		if len(changes) == 0 {
			clean = true
			return dsl.Report{}, nil
		}
		return dsl.Report{Body: specdrift.Body(d.Proposal, changes, refused), Files: changes}, nil
	})
	return outcome, clean, usage, err
}

// stepKey makes a repository name usable in a step name.
func stepKey(repo string) string {
	return strings.NewReplacer("/", "_", ":", "_", " ", "_").Replace(repo)
}
