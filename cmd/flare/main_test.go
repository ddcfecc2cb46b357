package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/flarebuild"
)

var flareBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flare-cli-")
	if err != nil {
		panic(err)
	}
	if flareBin, err = flarebuild.Flare(dir); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func gitRepo(t *testing.T) string {
	dir := t.TempDir()
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "one"}} {
		if args[0] == "add" {
			os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
		}
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
	}
	return dir
}

// flare runs the CLI and returns its exit code, stdout and stderr.
func flare(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(flareBin, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func TestRunPrintsTheCheckRunSummaryAndExitsByTheResult(t *testing.T) {
	repo := gitRepo(t)
	data := t.TempDir()
	code, out, errs := flare(t, "run", "offload-test", "--repo", repo, "--command", "cat a.txt", "--data", data)
	if code != 0 || !strings.Contains(out, "✓ offload-test — execution succeeded.") || !strings.Contains(out, "logs: http://127.0.0.1:") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "✓ checkout") || !strings.Contains(errs, "✓ exec") {
		t.Fatalf("steps not shown as they finish:\n%s", errs)
	}
	code, out, _ = flare(t, "run", "offload-test", "--repo", repo, "--command", "echo nope >&2; exit 3", "--data", data)
	if code != exitFailed || !strings.Contains(out, "✗ offload-test — execution failed.") || !strings.Contains(out, "nope") {
		t.Fatalf("failing command: exit %d\n%s", code, out)
	}
}

func TestRunRejectsBadInputWithTheFieldAndUsageCode(t *testing.T) {
	code, _, errs := flare(t, "run", "offload-test", "--repo", gitRepo(t), "--data", t.TempDir())
	if code != exitUsage || !strings.Contains(errs, "inputs.command") {
		t.Fatalf("missing command: exit %d\n%s", code, errs)
	}
	if code, _, errs := flare(t, "run", "offload-test", "--inputs", "{", "--data", t.TempDir()); code != exitUsage || !strings.Contains(errs, "--inputs") {
		t.Fatalf("bad --inputs: exit %d\n%s", code, errs)
	}
	if code, _, _ := flare(t, "nonsense"); code != exitUsage {
		t.Fatalf("unknown command: exit %d", code)
	}
	if code, _, errs := flare(t, "run", "--help"); code != exitUsage && code != exitOK || !strings.Contains(errs, "Examples") {
		t.Fatalf("--help: exit %d\n%s", code, errs)
	}
}

// up starts `flare up` on a free port and returns its data directory and URL.
func up(t *testing.T) (data, url string) {
	t.Helper()
	data = t.TempDir()
	cmd := exec.Command(flareBin, "up", "--addr", "127.0.0.1:0", "--data", data)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "flare-dispatch is up at "); ok {
			go io.Copy(io.Discard, stdout)
			return data, u
		}
	}
	t.Fatal("flare up ended before it was up")
	return "", ""
}

func TestDispatchWaitAndLogsFollowExitWithTheRunsResult(t *testing.T) {
	data, url := up(t)
	repo := gitRepo(t)
	for _, tc := range []struct {
		name, command string
		want          int
	}{
		{"success", "cat a.txt", exitOK},
		{"failure", "echo nope >&2; exit 3", exitFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := flare(t, "dispatch", "offload-test", "--repo", repo, "--command", tc.command, "--data", data,
				"--idempotency-key", "wait-"+tc.name, "--wait")
			if code != tc.want || !strings.Contains(out, "── check-run flare-dispatch/offload-test") {
				t.Fatalf("dispatch --wait: exit %d, want %d\n%s\n%s", code, tc.want, out, errs)
			}
			code, out, errs = flare(t, "logs", "-f", "wait-"+tc.name, "--data", data)
			if code != tc.want || !strings.Contains(out, "$ "+tc.command) {
				t.Fatalf("logs -f: exit %d, want %d\n%s\n%s", code, tc.want, out, errs)
			}
		})
	}

	// Cancelled, and a --timeout that passes first: 2.
	code, out, errs := flare(t, "dispatch", "offload-test", "--repo", repo, "--command", "sleep 60", "--data", data,
		"--idempotency-key", "wait-slow", "--wait", "--timeout", "1s")
	if code != exitCancelled || !strings.Contains(errs, "stopped waiting after 1s (--timeout)") {
		t.Fatalf("--timeout: exit %d\n%s\n%s", code, out, errs)
	}
	sec, err := local.LoadSecrets(data, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/executions/wait-slow/cancel", nil)
	req.Header.Set("Authorization", "Bearer "+sec.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %v %v", resp, err)
	}
	resp.Body.Close()
	if code, out, errs := flare(t, "logs", "-f", "wait-slow", "--data", data); code != exitCancelled {
		t.Fatalf("logs -f of a cancelled run: exit %d\n%s\n%s", code, out, errs)
	}

	// flare ls: newest first, filtered, paged (GET /v1/executions with the admin token).
	code, out, errs = flare(t, "ls", "--data", data, "--limit", "2", "--all")
	if code != exitOK || strings.Index(out, "wait-slow") > strings.Index(out, "wait-success") || !strings.Contains(out, "wait-failure") ||
		!strings.HasPrefix(out, "EXECUTION") {
		t.Fatalf("ls: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = flare(t, "ls", "--data", data, "--status", "failure", "--json")
	var listed []listedExecution
	if err := json.Unmarshal([]byte(out), &listed); code != exitOK || err != nil || len(listed) != 1 || listed[0].ID != "wait-failure" ||
		listed[0].Cost == nil || listed[0].Cost.GitHubMinutes != 1 {
		t.Fatalf("ls --status failure --json: exit %d %v\n%s\n%s", code, err, out, errs)
	}
}
