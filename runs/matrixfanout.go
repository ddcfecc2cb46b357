package runs

import (
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// matrix-fanout: run a test command as N shards, each a child execution of its own (an
// offload-test with SHARD_INDEX=1..N and SHARD_TOTAL=N, its own sandbox, checkout, logs
// and journal), queued at this execution's place. While the shards run this execution
// is suspended and holds no sandbox slot, so even ADMISSION_CAP=1 completes. wait-all
// (the default) lets every shard finish; fail-fast cancels the rest as soon as one
// fails. The check shows a table of the shards with their logs, and is red when any
// shard failed unless reportOnly.

// MatrixFanoutInputs are matrix-fanout's inputs.
type MatrixFanoutInputs struct {
	Repo            string            `json:"repo"`
	SHA             string            `json:"sha"`
	Command         string            `json:"command"`
	Shards          int               `json:"shards"`                    // 2..32
	FailureBehavior string            `json:"failureBehavior,omitempty"` // wait-all (default) | fail-fast
	Env             map[string]string `json:"env,omitempty"`
	Secrets         []string          `json:"secrets,omitzero"`
	SecretPrefix    string            `json:"secretPrefix,omitempty"`
	TimeoutSec      int               `json:"timeoutSec,omitempty"` // per shard; default 600
	Install         bool              `json:"install,omitempty"`
	ReportOnly      bool              `json:"reportOnly,omitempty"`
	Image           string            `json:"image,omitempty"` // documentary, as offload-test's
}

// ShardResult is one shard.
type ShardResult struct {
	Index      int    `json:"index"` // 1-based, as SHARD_INDEX
	Status     string `json:"status"`
	ExitCode   int    `json:"exitCode"` // -1 when the command never ended on its own
	DurationMs int64  `json:"durationMs"`
	LogURI     string `json:"logUri,omitempty"`
	LogsURL    string `json:"logsUrl,omitempty"`
	Execution  string `json:"executionId"`
}

// MatrixFanoutOutput is matrix-fanout's output.
type MatrixFanoutOutput struct {
	Shards       int           `json:"shards"`
	ShardResults []ShardResult `json:"shardResults"`
	Passed       int           `json:"passed"`
	Failed       int           `json:"failed"`
	SummaryMd    string        `json:"summaryMd"`
}

// Limits of matrix-fanout.
const (
	minShards = 2
	maxShards = 32
)

// Default fills the defaults.
func (in *MatrixFanoutInputs) Default() {
	if in.Secrets == nil {
		in.Secrets = []string{}
	}
	if in.TimeoutSec == 0 {
		in.TimeoutSec = offloadDefaultTimeoutSec
	}
	if in.FailureBehavior == "" {
		in.FailureBehavior = "wait-all"
	}
	in.SHA = strings.ToLower(in.SHA)
}

// Validate checks the inputs' values.
func (in *MatrixFanoutInputs) Validate() error {
	base := OffloadTestInputs{Repo: in.Repo, SHA: in.SHA, Command: in.Command, Env: in.Env, Secrets: in.Secrets, TimeoutSec: in.TimeoutSec, Image: in.Image}
	if err := base.Validate(); err != nil {
		return err
	}
	if in.Shards < minShards || in.Shards > maxShards {
		return &dsl.FieldError{Field: "shards", Message: fmt.Sprintf("must be between %d and %d", minShards, maxShards)}
	}
	if in.FailureBehavior != "wait-all" && in.FailureBehavior != "fail-fast" {
		return &dsl.FieldError{Field: "failureBehavior", Message: `must be "wait-all" or "fail-fast"`}
	}
	return nil
}

// MatrixFanout is the matrix-fanout run.
var MatrixFanout = dsl.Define(dsl.Spec{
	Name:        "matrix-fanout",
	Version:     "1.0.0",
	Description: "Run a test command as N shards, each a child execution with SHARD_INDEX/SHARD_TOTAL, and report every shard.",
	Pool:        dsl.PoolLean,
	MaxDuration: 1800 * time.Second,
}, func(c *dsl.Ctx, in MatrixFanoutInputs) (MatrixFanoutOutput, error) {
	children := make([]dsl.ChildSpec, 0, in.Shards)
	for i := 1; i <= in.Shards; i++ {
		env := map[string]string{}
		maps.Copy(env, in.Env)
		env["SHARD_INDEX"], env["SHARD_TOTAL"] = strconv.Itoa(i), strconv.Itoa(in.Shards)
		children = append(children, dsl.ChildSpec{Key: fmt.Sprintf("shard-%d", i), Run: OffloadTest.Spec().Name, Inputs: OffloadTestInputs{
			Repo: in.Repo, SHA: in.SHA, Command: in.Command, Env: env, Secrets: in.Secrets, SecretPrefix: in.SecretPrefix,
			TimeoutSec: in.TimeoutSec, Install: in.Install, Image: in.Image,
		}})
	}
	results, err := dsl.RunFanOut(c, dsl.FanOut{Name: "shards", Children: children, FailFast: in.FailureBehavior == "fail-fast"})
	if err != nil {
		return MatrixFanoutOutput{}, err
	}
	out := MatrixFanoutOutput{Shards: in.Shards}
	for i, r := range results {
		sr := shardResult(i+1, r)
		if sr.Status == "success" {
			out.Passed++
		} else {
			out.Failed++
		}
		out.ShardResults = append(out.ShardResults, sr)
	}
	out.SummaryMd = shardTable(out, in.FailureBehavior)
	if out.Failed > 0 && !in.ReportOnly {
		return out, &dsl.ShardsFailed{Failed: out.Failed, Total: out.Shards, SummaryMd: out.SummaryMd}
	}
	return out, nil
})

// shardResult reads a child offload-test: its output when it succeeded, the
// CommandFailed of its failure otherwise.
func shardResult(index int, r dsl.ChildResult) ShardResult {
	sr := ShardResult{Index: index, Status: r.Status, ExitCode: -1, DurationMs: r.DurationMs, LogsURL: r.LogsURL, Execution: r.Exec}
	var o OffloadTestOutput
	if r.Status == "success" && json.Unmarshal(r.Output, &o) == nil {
		sr.ExitCode, sr.DurationMs, sr.LogURI = o.ExitCode, o.DurationMs, o.LogURI
	}
	if r.Failure != nil {
		if cf, ok := dsl.FromFailure(*r.Failure).(*dsl.CommandFailed); ok {
			sr.ExitCode, sr.LogURI = cf.ExitCode, cf.LogURI
			if cf.DurationMs > 0 {
				sr.DurationMs = cf.DurationMs
			}
		}
	}
	return sr
}

// shardTable is the check's table of shards.
func shardTable(o MatrixFanoutOutput, behavior string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Matrix: %d/%d shards passed** (%s)\n\n", o.Passed, o.Shards, behavior)
	b.WriteString("| Shard | Result | Exit | Duration | Logs |\n|---:|---|---:|---:|---|\n")
	for _, s := range o.ShardResults {
		result := "❌ failed"
		switch s.Status {
		case "success":
			result = "✅ passed"
		case "cancelled":
			result = "⊘ cancelled"
		case "timed_out":
			result = "⏱ timed out"
		}
		exit := "—"
		if s.ExitCode >= 0 {
			exit = strconv.Itoa(s.ExitCode)
		}
		dur := "—"
		if s.DurationMs > 0 {
			dur = fmt.Sprintf("%.1f s", float64(s.DurationMs)/1000)
		}
		logs := "—"
		if s.LogsURL != "" {
			logs = "[logs](" + s.LogsURL + ")"
		}
		fmt.Fprintf(&b, "| %d/%d | %s | %s | %s | %s |\n", s.Index, o.Shards, result, exit, dur, logs)
	}
	return strings.TrimRight(b.String(), "\n")
}
