package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunStreamsTheCommandsOutputLive reads `flare run`'s stderr as it comes: the
// command's first line must show while the command is still blocked on a marker file
// only this test creates after seeing that line (fails without streamOutput: the
// line would only come with the final summary, after the release, so never).
func TestRunStreamsTheCommandsOutputLive(t *testing.T) {
	repo := gitRepo(t)
	// The marker sits in the repository, which the sandbox sees (read-only) at its own
	// path; a private /tmp (bwrap isolation) would hide one under t.TempDir().
	marker := filepath.Join(repo, "release-marker")
	command := fmt.Sprintf("echo first-line; echo err-line >&2; while [ ! -f %s ]; do sleep 0.1; done; echo second-line", marker)
	cmd := exec.Command(flareBin, "run", "offload-test", "--repo", repo, "--command", command, "--data", t.TempDir())
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(stderr)
	var seen []string
	released := false
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		if line == "first-line" {
			os.WriteFile(marker, nil, 0o644)
			released = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("flare run: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), strings.Join(seen, "\n"))
	}
	all := strings.Join(seen, "\n")
	if !released || !strings.Contains(all, "[stderr] err-line") || !strings.Contains(all, "second-line") {
		t.Fatalf("output not streamed (released %v):\n%s", released, all)
	}
	if strings.Index(all, "first-line") > strings.Index(all, "second-line") {
		t.Fatalf("lines out of order:\n%s", all)
	}
}

// TestLogsFollowStreamsAFanOutsShardsWithPrefixes reads `flare logs -f` of a
// matrix-fanout as it comes: each shard's first line must show, prefixed with the
// shard's key, while both shards are still blocked on a marker file that only this
// test creates after seeing both lines (fails without following the children's streams:
// the lines would never come, and the run would never end).
func TestLogsFollowStreamsAFanOutsShardsWithPrefixes(t *testing.T) {
	data, _ := up(t)
	repo := gitRepo(t)
	marker := filepath.Join(repo, "release") // visible in the sandbox, as above
	command := fmt.Sprintf(`echo "first-$SHARD_INDEX"; while [ ! -f %s ]; do sleep 0.1; done; echo "second-$SHARD_INDEX"`, marker)
	inputs := fmt.Sprintf(`{"repo":%q,"command":%q,"shards":2}`, repo, command)
	code, out, errs := flare(t, "dispatch", "matrix-fanout", "--inputs", inputs, "--data", data, "--idempotency-key", "fan-live")
	if code != exitOK || strings.TrimSpace(out) != "fan-live" {
		t.Fatalf("dispatch: exit %d\n%s\n%s", code, out, errs)
	}
	cmd := exec.Command(flareBin, "logs", "-f", "fan-live", "--data", data)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(120*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(stdout)
	var seen []string
	firsts := map[string]bool{}
	released := false
	for sc.Scan() {
		line := sc.Text()
		seen = append(seen, line)
		if line == "[shard-1] first-1" || line == "[shard-2] first-2" {
			firsts[line] = true
		}
		if len(firsts) == 2 && !released {
			os.WriteFile(marker, nil, 0o644)
			released = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("logs -f: %v\nstdout:\n%s\nstderr:\n%s", err, strings.Join(seen, "\n"), stderr.String())
	}
	all := strings.Join(seen, "\n")
	if !released || !strings.Contains(all, "[shard-1] second-1") || !strings.Contains(all, "[shard-2] second-2") {
		t.Fatalf("shards not streamed (released %v):\n%s", released, all)
	}
	if status := strings.TrimSpace(stderr.String()); !strings.HasPrefix(status, "✓ matrix-fanout fan-live success in ") || !strings.Contains(status, "/logs/fan-live?t=") {
		t.Fatalf("status line %q", status)
	}
	// --json: one JSON event per line, ending with the result
	code, out, errs = flare(t, "logs", "-f", "fan-live", "--json", "--data", data)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var last, first struct{ Type, Shard, Text, Conclusion string }
	json.Unmarshal([]byte(lines[len(lines)-1]), &last)
	if code != exitOK || last.Type != "end" || last.Conclusion != "success" || !strings.Contains(out, `"shard":"shard-2","text":"second-2"`) {
		t.Fatalf("--json: exit %d\n%s\n%s", code, out, errs)
	}
	for _, l := range lines {
		if err := json.Unmarshal([]byte(l), &first); err != nil {
			t.Fatalf("--json line %q: %v", l, err)
		}
	}
}

// TestRunQuietPrintsOnlyTheStatusLine: --quiet keeps stdout to one line with the
// result and the link, and prints no live output.
func TestRunQuietPrintsOnlyTheStatusLine(t *testing.T) {
	code, out, errs := flare(t, "run", "offload-test", "--repo", gitRepo(t), "--command", "echo loud", "--quiet", "--data", t.TempDir())
	if code != exitOK || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "✓ offload-test ") || !strings.Contains(out, " success in ") ||
		!strings.Contains(out, "/logs/") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if strings.Contains(errs, "loud") || strings.Contains(errs, "✓ exec") {
		t.Fatalf("--quiet printed live output:\n%s", errs)
	}
}
