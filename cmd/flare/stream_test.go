package main

import (
	"bufio"
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
