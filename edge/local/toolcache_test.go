package local_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// startFreshStack is startStack with FreshSandbox: every sandbox starts empty.
func startFreshStack(t testing.TB) *local.Stack {
	t.Helper()
	st, err := local.Open(context.Background(), local.Options{
		DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: env{}.get,
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(), FreshSandbox: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

// goVersion is `go env GOVERSION` of this machine (what a sandbox's probe prints).
func goVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		t.Fatalf("go env GOVERSION: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// runOffload dispatches offload-test of command at sha and waits for its end.
func runOffload(t *testing.T, st *local.Stack, repo, sha, command string) (view, string) {
	t.Helper()
	r := dispatch(t, st, "offload-test", offloadBody(repo, sha, command, map[string]any{"timeoutSec": 300}), "")
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 3*time.Minute)
	return v, logsText(t, st, id)
}

// TestFreshSandboxRestoresTheGoBuildCacheFromTheBlobStore: in a fresh sandbox (nothing
// of earlier runs on disk, none of the host's caches) the first run of a Go module
// finds only the image's layer (the standard library pre-built: it compiles its own
// package and no standard one) and, having succeeded, saves what it added to GOCACHE;
// the next run, at another commit and so in another fresh sandbox, finds its package
// already built. A run that fails saves nothing, and a new lockfile restores the same Go
// version's newest archive as its fallback. A pull request's run restores but saves
// nothing.
//
// Fails without Procs.Fresh (the first run sees the host's GOCACHE), without the Go
// layer (the first run compiles fmt), without the OnSuccess save (the second run
// compiles its package again) and without the success condition in the agent (the
// failed run's key appears).
func TestFreshSandboxRestoresTheGoBuildCacheFromTheBlobStore(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("go is required") // the test suite runs with Go: never a skip
	}
	t.Setenv("GOCACHE", t.TempDir()) // the host's cache, which a fresh sandbox must not see
	st := startFreshStack(t)
	gomod := "module example.com/fx\n\ngo 1.26\n"
	repo, first := repoWith(t, map[string]string{
		"go.mod": gomod,
		"fx.go":  "package fx\n\nimport \"fmt\"\n\n// Add adds.\nfunc Add(a, b int) string { return fmt.Sprint(a + b) }\n",
	})
	// go build -v names each package it compiles (none it finds in the cache). The
	// markers are split in the command, so only its output contains them whole.
	// Whatever was prefetched beside the checkout is adopted or gone by the command.
	const probe = `echo "GOCACHE=$(go env GOCACHE)"; go build -v ./... 2>&1 | sed 's/^/BU''ILT:/'; if [ -d "$(go env GOCACHE)" ]; then echo "STATE=w""arm"; fi; if [ -e "$HOME/.cache/flare-prefetch" ]; then echo "STA""GED:$(ls -A "$HOME/.cache/flare-prefetch")"; fi`
	const cold, std = "BUILT:example.com/fx\n", "BUILT:fmt\n"
	key, _ := dsl.ToolchainKey("go", goVersion(t), []byte(gomod))
	blob := "cache/local/app/" + key + ".tar.zst"

	v, logs := runOffload(t, st, repo, first, probe)
	if v.Execution.Status != "success" || !strings.Contains(logs, cold) || strings.Contains(logs, std) || strings.Contains(logs, "GOCACHE="+os.Getenv("GOCACHE")) {
		t.Fatalf("first run in a fresh sandbox: %s\n%s", v.Execution.Status, logs)
	}
	if keys := blobKeys(t, st, "cache/local/app/"); !strings.Contains(strings.Join(keys, " "), blob) {
		t.Fatalf("no %s after a successful run: %v", blob, keys)
	}

	second := commitFile(t, repo, "notes.txt", "same lockfile\n")
	v, logs = runOffload(t, st, repo, second, probe)
	if v.Execution.Status != "success" || strings.Contains(logs, cold) || !strings.Contains(logs, "STATE=warm") || strings.Contains(logs, "STAGED:") {
		t.Fatalf("second run did not find the restored cache: %s\n%s", v.Execution.Status, logs)
	}

	// A new lockfile: the fallback restores the Go version's archive; the run fails, so
	// its own key is never saved.
	third := commitFile(t, repo, "go.mod", gomod+"\n// changed\n")
	newKey, _ := dsl.ToolchainKey("go", goVersion(t), []byte(gomod+"\n// changed\n"))
	v, logs = runOffload(t, st, repo, third, probe+" && exit 3")
	if v.Execution.Status != "failure" || strings.Contains(logs, cold) || strings.Contains(logs, "STAGED:") {
		t.Fatalf("failing run with a new lockfile: %s\n%s", v.Execution.Status, logs)
	}
	for _, k := range blobKeys(t, st, "cache/local/app/") {
		if strings.Contains(k, newKey) {
			t.Fatalf("a failed run saved its cache: %s", k)
		}
	}

	// A pull request's run at that lockfile restores and succeeds, but its credential
	// cannot write the cache: still no archive under the new key.
	fourth := commitFile(t, repo, "notes.txt", "pull request\n")
	body := offloadBody(repo, fourth, probe, map[string]any{"timeoutSec": 300})
	body["github"].(map[string]any)["pr_number"] = 7
	r := dispatch(t, st, "offload-test", body, "")
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	if v := waitDone(t, st, id, 3*time.Minute); v.Execution.Status != "success" || strings.Contains(logsText(t, st, id), cold) {
		t.Fatalf("pull request run: %s\n%s", v.Execution.Status, logsText(t, st, id))
	}
	for _, k := range blobKeys(t, st, "cache/local/app/") {
		if strings.Contains(k, newKey) {
			t.Fatalf("a pull request's run saved the cache: %s", k)
		}
	}
}

// commitFile writes name in repo, commits it and returns the new commit.
func commitFile(t *testing.T, repo, name, body string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "change "+name)
	return git(t, repo, "rev-parse", "HEAD")
}

func blobKeys(t *testing.T, st *local.Stack, prefix string) []string {
	t.Helper()
	infos, err := st.Edge.Blobs.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, i := range infos {
		keys = append(keys, i.Key)
	}
	return keys
}
