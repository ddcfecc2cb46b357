package local_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/ci"
)

// installCached for real, with the package managers whose registries this machine
// reaches: npm (registry.npmjs.org), Go modules (the module proxy) and Cargo (a crate
// without dependencies: nothing to download, but the tool, lockfile, cache save and
// restore all run). The first execution misses and installs; the second, at another
// commit with the same lockfile (so another sandbox), restores and does not install.

// twoCommits makes a repository from files (prepared by prepare, e.g. to write a
// lockfile with the real tool) and a second commit that changes only notes.txt.
func twoCommits(t *testing.T, files map[string]string, prepare func(dir string)) (string, []string) {
	t.Helper()
	dir, _ := repoWith(t, files)
	if prepare != nil {
		prepare(dir)
		git(t, dir, "add", ".")
		git(t, dir, "commit", "-q", "-m", "lockfile")
	}
	first := git(t, dir, "rev-parse", "HEAD")
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("same lockfile\n"), 0o644)
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "notes")
	return dir, []string{first, git(t, dir, "rev-parse", "HEAD")}
}

func runIn(t *testing.T, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// installTwice runs command with install at both commits and returns both logs.
func installTwice(t *testing.T, repo string, shas []string, command string) (first, second string) {
	t.Helper()
	st := startStack(t, nil)
	var logs []string
	for i, sha := range shas {
		r := dispatch(t, st, "offload-test", offloadBody(repo, sha, command, map[string]any{"install": true, "timeoutSec": 600}), "")
		if r.status != http.StatusAccepted {
			t.Fatalf("dispatch: %d %s", r.status, r.raw)
		}
		id := r.body["executionId"].(string)
		v := waitDone(t, st, id, 5*time.Minute)
		text := logsText(t, st, id)
		if v.Execution.Status != "success" {
			t.Fatalf("run %d: %s\n%s\nlogs:\n%s", i+1, v.Execution.Status, v.Check.Summary, text)
		}
		steps := []string{}
		for _, s := range v.Steps {
			steps = append(steps, s.Name)
		}
		if !strings.Contains(strings.Join(steps, ","), "install") {
			t.Fatalf("no install step: %v", steps)
		}
		logs = append(logs, text)
	}
	return logs[0], logs[1]
}

func TestInstallCachedNpm(t *testing.T) {
	ci.Tool(t, "npm")
	repo, shas := twoCommits(t, map[string]string{
		"package.json": `{"name":"app","version":"1.0.0","private":true,"dependencies":{"is-number":"7.0.0"}}`,
		"test.js":      "const isNumber = require('is-number'); if (!isNumber(5)) process.exit(1); console.log('is-number works');\n",
	}, func(dir string) {
		runIn(t, dir, nil, "npm", "install", "--package-lock-only", "--no-audit", "--no-fund")
	})
	first, second := installTwice(t, repo, shas, "node test.js")
	if !strings.Contains(first, "$ npm ci") || !strings.Contains(first, "is-number works") {
		t.Fatalf("first run did not install:\n%s", first)
	}
	if strings.Contains(second, "$ npm ci") || !strings.Contains(second, "is-number works") {
		t.Fatalf("second run installed again instead of restoring:\n%s", second)
	}
}

func TestInstallCachedGoModules(t *testing.T) {
	ci.Tool(t, "go")
	if os.Getenv("GOCACHE") == "" { // share the build cache (not the module cache) so the test compiles fast
		if out, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
			t.Setenv("GOCACHE", strings.TrimSpace(string(out)))
		}
	}
	repo, shas := twoCommits(t, map[string]string{
		"go.mod":      "module example.com/app\n\ngo 1.22\n\nrequire github.com/google/uuid v1.6.0\n",
		"app_test.go": "package app\n\nimport (\n\t\"testing\"\n\n\t\"github.com/google/uuid\"\n)\n\nfunc TestUUID(t *testing.T) {\n\tif uuid.New().String() == \"\" {\n\t\tt.Fatal(\"empty\")\n\t}\n}\n",
	}, func(dir string) {
		runIn(t, dir, []string{"GOFLAGS=-mod=mod"}, "go", "mod", "download", "github.com/google/uuid")
		runIn(t, dir, []string{"GOFLAGS=-mod=mod"}, "go", "mod", "tidy")
	})
	first, second := installTwice(t, repo, shas, "go test -count=1 ./... && go env GOMODCACHE")
	if !strings.Contains(first, "$ go mod download") || !strings.Contains(first, "ok  \texample.com/app") {
		t.Fatalf("first run did not install:\n%s", first)
	}
	if strings.Contains(second, "$ go mod download") || !strings.Contains(second, "ok  \texample.com/app") || !strings.Contains(second, ".flare-tools/") {
		t.Fatalf("second run installed again instead of restoring:\n%s", second)
	}
}

func TestInstallCachedCargoWithoutDependencies(t *testing.T) {
	ci.Tool(t, "cargo")
	if os.Getenv("RUSTUP_HOME") == "" { // the sandbox's HOME is its workspace: tell rustup where it lives
		home, _ := os.UserHomeDir()
		if _, err := os.Stat(filepath.Join(home, ".rustup")); err == nil {
			t.Setenv("RUSTUP_HOME", filepath.Join(home, ".rustup"))
		}
	}
	repo, shas := twoCommits(t, map[string]string{
		"Cargo.toml":  "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
		"src/main.rs": "fn main() { println!(\"cargo app runs\"); }\n",
	}, func(dir string) {
		runIn(t, dir, nil, "cargo", "generate-lockfile", "--offline")
	})
	first, second := installTwice(t, repo, shas, "cargo run --quiet --offline")
	if !strings.Contains(first, "$ cargo fetch --locked") || !strings.Contains(first, "cargo app runs") {
		t.Fatalf("first run did not install:\n%s", first)
	}
	if strings.Contains(second, "$ cargo fetch --locked") || !strings.Contains(second, "cargo app runs") {
		t.Fatalf("second run installed again instead of restoring:\n%s", second)
	}
}
