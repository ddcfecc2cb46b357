package runs

import (
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// offload-test: run the caller's test command on a sandbox, at the pushed commit, and
// report its exit code. A non-zero exit fails the run (CommandFailed with the tail of
// stderr) unless reportOnly is set, in which case the check is green and the exit code
// is in the output.

// OffloadTestInputs are offload-test's inputs.
type OffloadTestInputs struct {
	Repo         string            `json:"repo"` // owner/name (locally also a path or file:// URL)
	SHA          string            `json:"sha"`  // commit to test
	Command      string            `json:"command"`
	Env          map[string]string `json:"env,omitempty"`    // non-secret; overrides secrets
	Secrets      []string          `json:"secrets,omitzero"` // keys to load (default [])
	SecretPrefix string            `json:"secretPrefix,omitempty"`
	TimeoutSec   int               `json:"timeoutSec,omitempty"` // default 600, max 3600
	ReportOnly   bool              `json:"reportOnly,omitempty"` // green whatever the exit code
	Install      bool              `json:"install,omitempty"`    // install dependencies first (by lockfile, cached)
	// Image is accepted as the original accepts it: documentary. The sandbox image is
	// the run's pool's, bound at deploy (contract §4); see specs/runs.md.
	Image string `json:"image,omitempty"`
}

// OffloadTestOutput is offload-test's output.
type OffloadTestOutput struct {
	ExitCode   int    `json:"exitCode"`
	DurationMs int64  `json:"durationMs"`
	LogURI     string `json:"logUri"`
}

// Limits of offload-test's inputs.
const (
	offloadDefaultTimeoutSec = 600
	offloadMaxTimeoutSec     = 3600
)

var (
	repoNameChars = pattern.NewSet("A-Za-z0-9_.-")
	hexSHA        = pattern.HexSHA
)

// Default fills the defaults.
func (in *OffloadTestInputs) Default() {
	if in.Secrets == nil {
		in.Secrets = []string{}
	}
	if in.TimeoutSec == 0 {
		in.TimeoutSec = offloadDefaultTimeoutSec
	}
	in.SHA = strings.ToLower(in.SHA)
}

// Validate checks the inputs' values.
func (in *OffloadTestInputs) Validate() error {
	if fe := validateRepo("repo", in.Repo); fe != nil {
		return fe
	}
	if !hexSHA(in.SHA) {
		return &dsl.FieldError{Field: "sha", Message: "must be a commit SHA (7 to 64 hex digits)"}
	}
	if strings.TrimSpace(in.Command) == "" {
		return &dsl.FieldError{Field: "command", Message: "must not be empty"}
	}
	if fe := dsl.CheckEnv("env", in.Env); fe != nil {
		return fe
	}
	if fe := validateImage("image", in.Image); fe != nil {
		return fe
	}
	for i, k := range in.Secrets {
		if !dsl.IsEnvName(k) {
			return &dsl.FieldError{Field: fieldIndex("secrets", i), Message: "is not a valid secret name (letters, digits, _)"}
		}
	}
	if in.TimeoutSec < 1 || in.TimeoutSec > offloadMaxTimeoutSec {
		return &dsl.FieldError{Field: "timeoutSec", Message: "must be between 1 and 3600"}
	}
	return nil
}

// OffloadTest is the offload-test run.
var OffloadTest = dsl.Define(dsl.Spec{
	Name:        "offload-test",
	Version:     "1.0.0",
	Description: "Run a test command on a sandbox at a commit and report its exit code.",
	Pool:        dsl.PoolLean,
	MaxDuration: 1800 * time.Second,
}, func(c *dsl.Ctx, in OffloadTestInputs) (OffloadTestOutput, error) {
	res, err := dsl.CommandRun(c, dsl.Command{
		Repo:         in.Repo,
		SHA:          in.SHA,
		Command:      in.Command,
		Env:          in.Env,
		Secrets:      in.Secrets,
		SecretPrefix: in.SecretPrefix,
		Timeout:      time.Duration(in.TimeoutSec) * time.Second,
		Install:      in.Install,
	})
	if err != nil {
		return OffloadTestOutput{}, err
	}
	out := OffloadTestOutput{ExitCode: res.ExitCode, DurationMs: res.DurationMs, LogURI: res.LogURI}
	if res.ExitCode != 0 && !in.ReportOnly {
		return out, &dsl.CommandFailed{ExitCode: res.ExitCode, StderrTail: res.StderrTail, DurationMs: res.DurationMs, LogURI: res.LogURI}
	}
	return out, nil
})
