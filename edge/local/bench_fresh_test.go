package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/benchstat"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// freshFixture is a repository to measure: its files (inline, or a tree copied from
// elsewhere), a command that prepares the lockfile with the real tool (nil: none), the
// command a run executes, and whether the run installs dependencies first.
type freshFixture struct {
	name    string // FLARE_BENCH_FIXTURES picks by name or by tool ("go": both Go fixtures)
	what    string // the table's description of the fixture
	tool    string // must be on PATH (CI=true: a failure, never a skip)
	files   map[string]string
	tree    func(testing.TB) string // a directory whose files are the fixture's (nil: files)
	prepare []string
	command string
	install string // "" or the install command a bare run does first
}

// realGoModule is the real Go fixture: a third-party module whose go.mod requires
// nothing outside the standard library (a fresh sandbox needs no module download),
// pinned, with a warm `go test ./...` of a few seconds (issue 15's motivating example).
const realGoModule = "github.com/BurntSushi/toml@v1.6.0"

// longGoModule is a real stdlib-only module whose suite takes seconds, not one.
const longGoModule = "github.com/google/go-cmp@v0.7.0"

var freshFixtures = []freshFixture{
	{name: "go", tool: "go", command: "go test -count=1 ./...", tree: goModuleTree(realGoModule),
		what: realGoModule + " through the Go module proxy (stdlib only; 8 packages, ~10k lines, 1,000 toml-test files)"},
	// A suite of the length people offload: go-cmp's warm `go test ./...` is several
	// seconds (most of it one test that diffs large values), where the fixed cost of a
	// run (dispatch, sandbox start, checkout, restore) no longer dominates the ratio.
	{name: "go-long", tool: "go", command: "go test -count=1 ./...", tree: goModuleTree(longGoModule),
		what: longGoModule + " through the Go module proxy (stdlib only; a multi-second suite)"},
	{name: "go-small", tool: "go", command: "go test -count=1 ./...", what: "2 stdlib-only packages written for the bench", files: map[string]string{
		"go.mod": "module example.com/fx\n\ngo 1.26\n",
		"api/api.go": `package api

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Handler answers with the upper-cased path as JSON.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"path": strings.ToUpper(r.URL.Path)})
	})
}
`,
		"api/api_test.go": `package api

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func TestHandler(t *testing.T) {
	s := httptest.NewServer(Handler())
	defer s.Close()
	r, err := s.Client().Get(s.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	if err := json.NewDecoder(r.Body).Decode(&got); err != nil || got["path"] != "/X" {
		t.Fatalf("%v %v", got, err)
	}
}
`,
		"text/text.go":      "package text\n\nimport \"strings\"\n\n// Words splits s.\nfunc Words(s string) []string { return strings.Fields(s) }\n",
		"text/text_test.go": "package text\n\nimport \"testing\"\n\nfunc TestWords(t *testing.T) {\n\tif len(Words(\"a b\")) != 2 {\n\t\tt.Fatal(\"words\")\n\t}\n}\n",
	}},
	{name: "npm", tool: "npm", what: "`is-number` 7.0.0 from the registry", command: "npm test", install: "npm ci --no-audit --no-fund", files: map[string]string{
		"package.json": `{"name":"fx","version":"1.0.0","private":true,"scripts":{"test":"node test.js"},"dependencies":{"is-number":"7.0.0"}}`,
		"test.js":      "const isNumber = require('is-number');\nif (!isNumber(5)) process.exit(1);\nconsole.log('ok');\n",
	}, prepare: []string{"npm", "install", "--no-audit", "--no-fund", "--package-lock-only"}},
	{name: "cargo", tool: "cargo", command: "cargo test --offline", tree: sourceTree("testdata/freshcargo"),
		what: "ledgerkit (testdata/freshcargo, written for the bench): 6 modules, property tests, a doc-test", prepare: []string{"cargo", "generate-lockfile", "--offline"}},
	{name: "cargo-small", tool: "cargo", what: "one function, one test", command: "cargo test --offline", files: map[string]string{
		"Cargo.toml": "[package]\nname = \"fx\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
		"src/lib.rs": "pub fn add(a: u64, b: u64) -> u64 { a + b }\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() { assert_eq!(super::add(2, 2), 4); }\n}\n",
	}, prepare: []string{"cargo", "generate-lockfile", "--offline"}},
}

// BenchmarkFreshSandbox measures issue 15's goal for toolchain caches: a repository's
// run in a fresh sandbox (`--fresh-sandbox`: nothing of earlier runs on disk, none of
// the host's caches, as a Container) against the same command run bare with warm
// caches. For each fixture (a real git repository): bare warm = the command (after the
// install, for npm) run a second time in a clone on this machine, median of 3; first =
// dispatch → completed check of the first run in a fresh stack (cold: nothing in the
// blob store); second = the same at the next commit (same lockfile: another fresh
// sandbox, caches restored from the blob store). Goals: second ≤ 1.3× bare, first ≤ 3×.
// It prints a markdown table for BENCHMARKS.md with the machine, date, toolchains and
// each row's load average.
// FLARE_BENCH_FRESH=1 turns it on (it compiles cold: minutes on a loaded machine);
// FLARE_BENCH_FIXTURES=go,npm picks fixtures by name or tool ("go" runs go and go-small).
// The real Go fixture is fetched through the Go module proxy: no proxy, a failed bench.
func BenchmarkFreshSandbox(b *testing.B) {
	if os.Getenv("FLARE_BENCH_FRESH") == "" {
		b.Skip("set FLARE_BENCH_FRESH=1 to run the fresh-sandbox benchmark")
	}
	want := strings.Split(os.Getenv("FLARE_BENCH_FIXTURES"), ",")
	started := time.Now().UTC()
	startLoad := benchstat.LoadAvg()
	var rows []string
	for _, fx := range freshFixtures {
		if want[0] != "" && !slices.Contains(want, fx.name) && !slices.Contains(want, fx.tool) {
			continue
		}
		if _, err := exec.LookPath(fx.tool); err != nil {
			if os.Getenv("CI") == "true" {
				b.Fatalf("%s is required", fx.tool)
			}
			rows = append(rows, fmt.Sprintf("| %s | %s | %s not installed | | | | |", fx.name, fx.what, fx.tool))
			continue
		}
		b.Run(fx.name, func(b *testing.B) {
			for b.Loop() {
				load := benchstat.LoadAvg()
				bare, first, second := measureFresh(b, fx)
				b.ReportMetric(bare.Seconds(), "bare-s")
				b.ReportMetric(first.Seconds(), "first-s")
				b.ReportMetric(second.Seconds(), "second-s")
				rows = append(rows, fmt.Sprintf("| %s | %s | %.2f s | %.2f s (**%.2f×**) | %.2f s (**%.2f×**) | %s → %s | `%s` |", fx.name, fx.what,
					bare.Seconds(), first.Seconds(), first.Seconds()/bare.Seconds(), second.Seconds(), second.Seconds()/bare.Seconds(),
					load, benchstat.LoadAvg(), fx.command))
			}
		})
	}
	fmt.Printf("\n%s → %s UTC, %s, load average (1 min) at the start %s, at the end %s\n%s\n\n"+
		"| fixture | what | bare, warm (median of 3) | first run, fresh sandbox (goal ≤ 3×) | second run, fresh sandbox (goal ≤ 1.3×) | load (1 min) during the row | command |\n"+
		"|---|---|---|---|---|---|---|\n%s\n",
		started.Format("2006-01-02 15:04"), time.Now().UTC().Format("15:04"), benchstat.Machine(),
		startLoad, benchstat.LoadAvg(), toolchains(), strings.Join(rows, "\n"))
}

// toolchains names the versions the figures were taken with.
func toolchains() string {
	var v []string
	for _, c := range [][]string{{"go", "version"}, {"cargo", "--version"}, {"node", "--version"}, {"npm", "--version"}} {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			continue
		}
		line := strings.TrimSpace(string(out))
		if c[0] == "node" || c[0] == "npm" {
			line = c[0] + " " + line
		}
		v = append(v, line)
	}
	return strings.Join(v, "; ")
}

// goModuleTree fetches a module (path@version) through the Go module proxy this
// machine reaches (`go mod download`, into the host's module cache) and returns its
// directory. A module that cannot be fetched fails the benchmark with go's own error:
// never a silent skip, which would print a table without the row that matters.
func goModuleTree(mod string) func(testing.TB) string {
	return func(tb testing.TB) string {
		tb.Helper()
		cmd := exec.Command("go", "mod", "download", "-json", mod)
		cmd.Dir = tb.TempDir() // outside any module: the download is all it does
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var got struct{ Dir, Error string }
		if jerr := json.Unmarshal(out, &got); err != nil || jerr != nil || got.Error != "" || got.Dir == "" {
			goproxy, _ := exec.Command("go", "env", "GOPROXY").Output()
			tb.Fatalf("fetching the fixture %s through the Go module proxy (GOPROXY=%s): %v %s%s",
				mod, strings.TrimSpace(string(goproxy)), err, got.Error, stderr.String())
		}
		return got.Dir
	}
}

// sourceTree is a directory of this package's testdata.
func sourceTree(dir string) func(testing.TB) string {
	return func(tb testing.TB) string {
		abs, err := filepath.Abs(dir)
		if err != nil {
			tb.Fatal(err)
		}
		return abs
	}
}

// copyTree copies the regular files under src into dst, keeping the executable bit;
// files are written writable whatever their mode (the module cache's are read-only).
func copyTree(tb testing.TB, src, dst string) {
	tb.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return err
		}
		return os.WriteFile(to, body, 0o644|info.Mode().Perm()&0o111)
	})
	if err != nil {
		tb.Fatalf("copying the fixture %s: %v", src, err)
	}
}

func measureFresh(b *testing.B, fx freshFixture) (bare, first, second time.Duration) {
	w := gittest.Init(b)
	w.Write(fx.files)
	if fx.tree != nil {
		copyTree(b, fx.tree(b), w.Dir)
	}
	if fx.prepare != nil {
		cmd := exec.Command(fx.prepare[0], fx.prepare[1:]...)
		cmd.Dir = w.Dir
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", fx.prepare, err, out)
		}
	}
	shaA := w.Commit("fixture", nil)
	shaB := w.Commit("notes", map[string]string{"notes.txt": "same lockfile\n"})

	// Bare, warm: a clone, the command once to warm every cache, then timed.
	clone := b.TempDir()
	if out, err := exec.Command("git", "clone", "-q", w.Dir, clone).CombinedOutput(); err != nil {
		b.Fatalf("clone: %v\n%s", err, out)
	}
	line := fx.command
	if fx.install != "" {
		line = fx.install + " && " + fx.command
	}
	var times []time.Duration
	for i := range 4 {
		t0 := time.Now()
		cmd := exec.Command("sh", "-c", line)
		cmd.Dir = clone
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("bare %s: %v\n%s", line, err, out)
		}
		if i > 0 {
			times = append(times, time.Since(t0))
		}
	}
	slices.Sort(times)
	bare = times[len(times)/2]

	st, err := local.Open(context.Background(), local.Options{
		DataDir: b.TempDir(), Addr: "127.0.0.1:0", Getenv: env{}.get,
		AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(), FreshSandbox: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close(context.Background())
	run := func(sha string) time.Duration {
		// The sandbox's copy of the Go layer, begun when the last sandbox retired, is made
		// before the clock starts: a Container's image layer costs its start nothing.
		st.Procs.WarmUp()
		t0 := time.Now()
		r := dispatch(b, st, "offload-test", offloadBody(w.Dir, sha, fx.command, map[string]any{"install": fx.install != "", "timeoutSec": 1800}), "")
		v := waitDone(b, st, r.body["executionId"].(string), 30*time.Minute)
		if v.Execution.Status != "success" {
			b.Fatalf("%s run at %s: %s\n%s", fx.name, sha[:8], v.Execution.Status, v.Check.Summary)
		}
		took := time.Since(t0)
		// Where the time went: each step's start (from the dispatch) and duration; the
		// gaps are the sandbox's start, the caches' restore and save, and the report.
		var steps []string
		for _, s := range v.Steps {
			steps = append(steps, fmt.Sprintf("%s at +%.2fs for %.2fs", s.Name, s.StartedAt.Sub(t0).Seconds(), s.CompletedAt.Sub(s.StartedAt).Seconds()))
		}
		b.Logf("%s at %s: %.2fs; steps: %s", fx.name, sha[:8], took.Seconds(), strings.Join(steps, ", "))
		if os.Getenv("FLARE_BENCH_LOGS") != "" { // the run's own log: toolchain caches, timings
			b.Log(logsText(b, st, r.body["executionId"].(string)))
		}
		return took
	}
	first, second = run(shaA), run(shaB)
	// What the first run saved and the second restored: the archives' sizes.
	if infos, err := st.Edge.Blobs.List(context.Background(), "cache/"); err == nil {
		for _, i := range infos {
			b.Logf("archive %s: %.1f MB", i.Key, float64(i.Size)/1e6)
		}
	}
	return bare, first, second
}
