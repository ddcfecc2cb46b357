package runs

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// deploy-smoke: request a few paths of a deployed URL from a sandbox and report which
// answered healthy (2xx or 3xx). Red when any did not, unless reportOnly. Fired by a
// successful production deployment_status webhook with an environment_url, or
// dispatched.

// DeploySmokeInputs are deploy-smoke's inputs.
type DeploySmokeInputs struct {
	Repo       string   `json:"repo"`
	SHA        string   `json:"sha,omitempty"`
	BaseURL    string   `json:"baseURL"`
	Paths      []string `json:"paths,omitzero"` // default /, /health, /api/status
	ReportOnly bool     `json:"reportOnly,omitempty"`
}

// DeploySmokeOutput is deploy-smoke's output.
type DeploySmokeOutput struct {
	Checked   int         `json:"checked"`
	Failed    int         `json:"failed"`
	Results   []dsl.Probe `json:"results"`
	SummaryMd string      `json:"summaryMd"`
}

// DefaultSmokePaths are probed when the inputs name none (contract §4).
var DefaultSmokePaths = []string{"/", "/health", "/api/status"}

const maxSmokePaths = 50

// Default fills the defaults.
func (in *DeploySmokeInputs) Default() {
	if len(in.Paths) == 0 {
		in.Paths = append([]string{}, DefaultSmokePaths...)
	}
}

// Validate checks the inputs' values.
func (in *DeploySmokeInputs) Validate() error {
	if fe := validateRepo("repo", in.Repo); fe != nil {
		return fe
	}
	u, err := url.Parse(in.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		strings.ContainsFunc(in.BaseURL, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return &dsl.FieldError{Field: "baseURL", Message: "must be an http(s) URL without credentials"}
	}
	if len(in.Paths) > maxSmokePaths {
		return &dsl.FieldError{Field: "paths", Message: fmt.Sprintf("at most %d paths", maxSmokePaths)}
	}
	for i, p := range in.Paths {
		if !strings.HasPrefix(p, "/") || len(p) > 2000 || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return &dsl.FieldError{Field: fieldIndex("paths", i), Message: "must start with / and have no spaces or control characters"}
		}
	}
	return nil
}

// DeploySmoke is the deploy-smoke run.
var DeploySmoke = dsl.Define(dsl.Spec{
	Name:        "deploy-smoke",
	Version:     "1.0.0",
	Description: "Probe paths of a deployed URL and report which answered healthy.",
	Pool:        dsl.PoolLean,
	MaxDuration: 300 * time.Second,
	Triggers: []dsl.Trigger{{
		Event:   "deployment_status",
		Actions: []string{"created"},
		Gate: func(e *dsl.WebhookEvent) bool {
			return e.String("deployment_status.state") == "success" && e.String("deployment_status.environment") == "production" &&
				e.String("deployment_status.environment_url") != ""
		},
		IdempotencyKey: func(e *dsl.WebhookEvent) string {
			return "deploy-smoke:" + strings.ReplaceAll(e.Repo(), "/", "_") + ":" + fmt.Sprint(e.Int("deployment.id"))
		},
		Inputs: func(e *dsl.WebhookEvent) any {
			return DeploySmokeInputs{Repo: e.Repo(), SHA: e.HeadSHA(), BaseURL: e.String("deployment_status.environment_url")}
		},
	}},
}, func(c *dsl.Ctx, in DeploySmokeInputs) (DeploySmokeOutput, error) {
	probes, err := dsl.ProbeHTTP(c, "probe", in.BaseURL, in.Paths)
	if err != nil {
		return DeploySmokeOutput{}, err
	}
	out := DeploySmokeOutput{Checked: probes.Checked, Failed: probes.Failed, Results: probes.Results}
	out.SummaryMd = probeTable(in.BaseURL, probes)
	if out.Failed > 0 && !in.ReportOnly {
		return out, &dsl.AcceptanceFailed{ExitCode: 1, SummaryMd: out.SummaryMd}
	}
	return out, nil
})

// probeTable is the check's table of probes.
func probeTable(base string, p dsl.Probes) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Smoke: %d/%d endpoints healthy** on `%s`\n\n| Path | Status | Result |\n|---|---:|---|\n",
		p.Checked-p.Failed, p.Checked, strings.ReplaceAll(base, "`", "'"))
	for _, r := range p.Results {
		status, result := "—", "✅ healthy"
		if r.Status > 0 {
			status = fmt.Sprint(r.Status)
		}
		if !r.OK {
			result = "❌ unhealthy"
			if r.Error != "" {
				result += " (" + strings.NewReplacer("|", "\\|", "\n", " ", "`", "'").Replace(r.Error) + ")"
			}
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", strings.ReplaceAll(r.Path, "`", "'"), status, result)
	}
	return strings.TrimRight(b.String(), "\n")
}
