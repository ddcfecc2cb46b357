// Package actiontest runs the GitHub Action's script (actions/flare-dispatch-action)
// as a runner would, against the embedded stack that `flare up` serves, with the real
// flare binary as its agents. The Action's own tests and the recipes' tests use it.
package actiontest

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/flarebuild"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// Script is the Action's script.
func Script() string {
	return filepath.Join(flarebuild.Root(), "actions", "flare-dispatch-action", "dispatch.sh")
}

// Stack starts the embedded stack with the production runs, as `flare up` does, and
// closes it when the test ends.
func Stack(t testing.TB, flareBin string, vars map[string]string) *local.Stack {
	t.Helper()
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: func(k string) string { return vars[k] },
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

// Runner is one job's environment: the GITHUB_* variables a runner sets (see
// "Default environment variables" in GitHub's docs) and the step's inputs.
type Runner struct {
	Repository string // owner/name
	SHA        string // GITHUB_SHA
	Ref        string // GITHUB_REF
	Event      string // GITHUB_EVENT_NAME
	Payload    string // the event payload (GITHUB_EVENT_PATH's content); "{}" when empty
	HeadRef    string // GITHUB_HEAD_REF, set on pull_request events
	RunAttempt string // GITHUB_RUN_ATTEMPT; "1" when empty
	Extra      []string
}

// Result is what a step run left behind.
type Result struct {
	Code    int
	Stdout  string
	Stderr  string
	Outputs map[string]string // from GITHUB_OUTPUT
	Summary string            // GITHUB_STEP_SUMMARY
}

// Run executes the Action's script with the inputs (names as in action.yml) the way
// the composite step of action.yml does: each as INPUT_<NAME>, upper-cased, - → _.
func (r Runner) Run(t testing.TB, inputs map[string]string) Result {
	t.Helper()
	dir := t.TempDir()
	payload := r.Payload
	if payload == "" {
		payload = "{}"
	}
	files := map[string]string{"event.json": payload, "output": "", "summary": ""}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	attempt := r.RunAttempt
	if attempt == "" {
		attempt = "1"
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "CI=true", "GITHUB_ACTIONS=true",
		"GITHUB_REPOSITORY=" + r.Repository, "GITHUB_REPOSITORY_OWNER=" + strings.Split(r.Repository, "/")[0],
		"GITHUB_SHA=" + r.SHA, "GITHUB_REF=" + r.Ref, "GITHUB_EVENT_NAME=" + r.Event,
		"GITHUB_EVENT_PATH=" + filepath.Join(dir, "event.json"), "GITHUB_HEAD_REF=" + r.HeadRef,
		"GITHUB_RUN_ID=4242", "GITHUB_RUN_NUMBER=7", "GITHUB_RUN_ATTEMPT=" + attempt, "GITHUB_JOB=dispatch",
		"GITHUB_ACTOR=octocat", "GITHUB_WORKFLOW=flare", "GITHUB_SERVER_URL=https://github.com",
		"GITHUB_API_URL=https://api.github.com", "GITHUB_WORKSPACE=" + dir, "RUNNER_TEMP=" + dir,
		"GITHUB_ACTION_PATH=" + filepath.Dir(Script()),
		"GITHUB_OUTPUT=" + filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY=" + filepath.Join(dir, "summary"),
		// The script's waits, shortened for tests; the defaults are 5 s.
		"FLARE_DISPATCH_BACKOFF_SEC=0", "FLARE_DISPATCH_POLL_SEC=0.2",
	}
	for name, v := range inputs {
		env = append(env, "INPUT_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))+"="+v)
	}
	env = append(env, r.Extra...)
	cmd := exec.Command("bash", Script())
	cmd.Env = env
	cmd.Dir = dir
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.String(), Stderr: stderr.String(), Outputs: map[string]string{}}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "output"))
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			res.Outputs[k] = v
		}
	}
	summary, _ := os.ReadFile(filepath.Join(dir, "summary"))
	res.Summary = string(summary)
	return res
}
