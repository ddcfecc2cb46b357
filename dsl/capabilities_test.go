package dsl_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
)

// clock is dsl.IO with a settable time.
type clock struct{ t time.Time }

func (c *clock) Now() time.Time       { return c.t }
func (c *clock) NewID() string        { return "id" }
func (c *clock) Getenv(string) string { return "" }
func (c *clock) PriorExecution(context.Context, string) (dsl.PriorExecution, bool, error) {
	return dsl.PriorExecution{}, false, nil
}

// newAttempt is a fresh Ctx (a new attempt) over shared capabilities.
func newAttempt(j *dsltest.Journal, io dsl.IO, caps func(c *dsl.Ctx)) *dsl.Ctx {
	c := &dsl.Ctx{Context: context.Background(), Exec: "e", Attempt: 1, Journal: j, IO: io}
	if caps != nil {
		caps(c)
	}
	return c
}

func TestSleepRecordsTheWakeTimeAndSuspendsUntilIt(t *testing.T) {
	j, clk, sus := dsltest.NewJournal(), &clock{t: time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)}, &dsltest.Suspender{}
	with := func(c *dsl.Ctx) { c.Suspender = sus }
	wake := clk.t.Add(time.Hour)

	err := dsl.Sleep(newAttempt(j, clk, with), "nap", time.Hour)
	var s *dsl.Suspended
	if !errors.As(err, &s) || !s.Until.Equal(wake) || len(sus.Calls) != 1 || !sus.Calls[0].Until.Equal(wake) {
		t.Fatalf("first attempt: %v, suspensions %+v", err, sus.Calls)
	}
	// Woken early (another reason, a clock behind): the same wake time, not an hour more.
	clk.t = clk.t.Add(30 * time.Minute)
	if err := dsl.Sleep(newAttempt(j, clk, with), "nap", time.Hour); !dsl.IsSuspended(err) || !sus.Calls[1].Until.Equal(wake) {
		t.Fatalf("early: %v %+v", err, sus.Calls)
	}
	clk.t = wake
	if err := dsl.Sleep(newAttempt(j, clk, with), "nap", time.Hour); err != nil || len(sus.Calls) != 2 {
		t.Fatalf("after the wake time: %v (%d suspensions)", err, len(sus.Calls))
	}
	// SleepUntil keeps the first deadline too.
	if err := dsl.SleepUntil(newAttempt(j, clk, with), "until", wake.Add(time.Hour)); !dsl.IsSuspended(err) {
		t.Fatal(err)
	}
	if err := dsl.SleepUntil(newAttempt(j, clk, with), "until", wake); !dsl.IsSuspended(err) || !sus.Calls[2].Until.Equal(wake.Add(time.Hour)) {
		t.Fatalf("SleepUntil replays its recorded time: %v %+v", err, sus.Calls)
	}
}

func TestShortSleepWaitsInTheAttempt(t *testing.T) {
	sus := &dsltest.Suspender{}
	c := newAttempt(dsltest.NewJournal(), nil, func(c *dsl.Ctx) { c.Suspender = sus })
	start := time.Now()
	if err := dsl.Sleep(c, "blink", 100*time.Millisecond); err != nil || len(sus.Calls) != 0 || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("%v %d %s", err, len(sus.Calls), time.Since(start))
	}
}

func TestSuspendWithoutASuspenderFails(t *testing.T) {
	err := dsl.Suspend(newAttempt(dsltest.NewJournal(), nil, nil), dsl.Suspension{Until: time.Now().Add(time.Hour)})
	var sf *dsl.StepFailed
	if !errors.As(err, &sf) || dsl.IsSuspended(err) {
		t.Fatal(err)
	}
}

func TestASuspendedStepIsNotRecorded(t *testing.T) {
	j, sus := dsltest.NewJournal(), &dsltest.Suspender{}
	c := newAttempt(j, nil, func(c *dsl.Ctx) { c.Suspender = sus })
	_, err := dsl.Step(c, "waits", func(context.Context) (int, error) {
		return 0, dsl.Suspend(c, dsl.Suspension{Event: "approve"})
	}, dsl.Retries(3))
	if !dsl.IsSuspended(err) || j.Has("waits") || len(sus.Calls) != 1 {
		t.Fatalf("%v recorded=%v calls=%d", err, j.Has("waits"), len(sus.Calls))
	}
}

func TestRunFanOutSpawnsSuspendsAndCollects(t *testing.T) {
	j, sus, kids := dsltest.NewJournal(), &dsltest.Suspender{}, &dsltest.Children{Parent: "p"}
	with := func(c *dsl.Ctx) { c.Suspender, c.Children = sus, kids }
	f := dsl.FanOut{Name: "shards", FailFast: true, Children: []dsl.ChildSpec{
		{Key: "shard-1", Run: "offload-test", Inputs: map[string]string{"command": "a"}},
		{Key: "shard-2", Run: "offload-test", Inputs: map[string]string{"command": "b"}},
	}}
	_, err := dsl.RunFanOut(newAttempt(j, nil, with), f)
	if !dsl.IsSuspended(err) || len(sus.Calls) != 1 || strings.Join(sus.Calls[0].Children, ",") != "p:shard-1,p:shard-2" || !kids.FailFast {
		t.Fatalf("first attempt: %v %+v", err, sus.Calls)
	}
	// One ended: the next attempt waits for the other only, and spawns nothing new.
	kids.Finish("shard-1", "success", map[string]int{"exitCode": 0}, nil, time.Second)
	if _, err := dsl.RunFanOut(newAttempt(j, nil, with), f); !dsl.IsSuspended(err) || strings.Join(sus.Calls[1].Children, ",") != "p:shard-2" || kids.Spawns != 1 {
		t.Fatalf("second attempt: %v %+v spawns %d", err, sus.Calls, kids.Spawns)
	}
	kids.Finish("shard-2", "failure", nil, &dsl.Failure{Tag: dsl.TagCommandFailed, Message: "exit 1"}, 2*time.Second)
	res, err := dsl.RunFanOut(newAttempt(j, nil, with), f)
	if err != nil || len(res) != 2 || res[0].Status != "success" || string(res[0].Output) != `{"exitCode":0}` || res[1].Failure == nil {
		t.Fatalf("third attempt: %v %+v", err, res)
	}
	if !j.Has("shards-results") {
		t.Fatal("results not recorded")
	}
	// Replayed: the recorded results, nothing asked.
	kids.Finish("shard-2", "success", nil, nil, 0)
	res, _ = dsl.RunFanOut(newAttempt(j, nil, with), f)
	if res[1].Status != "failure" {
		t.Fatalf("replay read live results: %+v", res[1])
	}
}

func TestRunFanOutValidates(t *testing.T) {
	c := newAttempt(dsltest.NewJournal(), nil, func(c *dsl.Ctx) { c.Children = &dsltest.Children{} })
	for _, f := range []dsl.FanOut{
		{Name: "x"},
		{Name: "x", Children: []dsl.ChildSpec{{Key: "a b", Run: "r"}}},
		{Name: "x", Children: []dsl.ChildSpec{{Key: "a", Run: "r"}, {Key: "a", Run: "r"}}},
		{Name: "x", Children: []dsl.ChildSpec{{Key: "a"}}},
	} {
		var sf *dsl.StepFailed
		if _, err := dsl.RunFanOut(c, f); !errors.As(err, &sf) {
			t.Errorf("%+v: %v", f, err)
		}
	}
}

// fileSandbox is a sandbox of files in memory whose commands are recorded.
type fileSandbox struct {
	dsltest.SandboxBase
	mu       sync.Mutex
	files    map[string]string
	commands []dsl.ExecRequest
	exec     func(r dsl.ExecRequest) dsl.ExecResult
	changes  []dsl.Change
}

func (s *fileSandbox) Exists(_ context.Context, p string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range s.files {
		if f == p || strings.HasPrefix(f, p+"/") {
			return true, nil
		}
	}
	return false, nil
}

func (s *fileSandbox) ReadFile(_ context.Context, p string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.files[p]; ok {
		return []byte(b), nil
	}
	return nil, &dsl.ReadFileFailed{Path: p, Message: "no such file"}
}

func (s *fileSandbox) Exec(_ context.Context, r dsl.ExecRequest) (dsl.ExecResult, error) {
	s.mu.Lock()
	s.commands = append(s.commands, r)
	s.mu.Unlock()
	if s.exec != nil {
		return s.exec(r), nil
	}
	return dsl.ExecResult{}, nil
}

func (s *fileSandbox) Checkout(context.Context, string, string) (string, error) {
	return "/ws/app", nil
}

func (s *fileSandbox) Changes(context.Context, string) ([]dsl.Change, error) { return s.changes, nil }

// memCache is dsl.Cache over a map of key → the paths' presence.
type memCache struct {
	saved map[string][]string
	sb    *fileSandbox
	// staged is what Prefetch of each prefix hands out (none: nothing to prefetch).
	staged map[string]*memStaged
}

func (m *memCache) Prefetch(_ context.Context, prefix string) (dsl.Prefetched, error) {
	if st := m.staged[prefix]; st != nil {
		return st, nil
	}
	return nil, nil
}

// memStaged is a prefetched archive of a memCache: adopting it restores its key.
type memStaged struct {
	m                *memCache
	key              string
	adopted, dropped atomic.Int32
}

func (s *memStaged) Key() string { return s.key }

func (s *memStaged) Adopt(ctx context.Context, paths []string) (dsl.CacheResult, error) {
	s.adopted.Add(1)
	res, err := s.m.Restore(ctx, s.key, paths)
	res.Prefetched = true
	return res, err
}

func (s *memStaged) Drop() { s.dropped.Add(1) }

func (m *memCache) Restore(_ context.Context, key string, paths []string) (dsl.CacheResult, error) {
	if _, ok := m.saved[key]; !ok {
		return dsl.CacheResult{Key: key}, nil
	}
	for _, p := range paths {
		m.sb.files[p+"/restored"] = key
	}
	return dsl.CacheResult{Key: key, Hit: true, Files: 1}, nil
}

func (m *memCache) RestoreFallback(ctx context.Context, key string, _, paths []string) (dsl.CacheResult, error) {
	return m.Restore(ctx, key, paths)
}

func (m *memCache) Save(_ context.Context, key string, paths []string) (dsl.CacheResult, error) {
	m.saved[key] = paths
	return dsl.CacheResult{Key: key, Files: 1}, nil
}

func TestInstallCachedMissesInstallsAndSavesThenRestores(t *testing.T) {
	for _, c := range []struct {
		lockfile, tool, command, path string
		env                           map[string]string
	}{
		{"pnpm-lock.yaml", "pnpm", "pnpm install --frozen-lockfile", "/ws/app/node_modules", nil},
		{"package-lock.json", "npm", "npm ci --no-audit --no-fund", "/ws/app/node_modules", nil},
		{"yarn.lock", "yarn", "yarn install --frozen-lockfile", "/ws/app/node_modules", nil},
		{"Cargo.lock", "cargo", "cargo fetch --locked", "/ws/.flare-tools/app/cargo/registry/cache", map[string]string{"CARGO_HOME": "/ws/.flare-tools/app/cargo"}},
		{"uv.lock", "uv", "uv sync --frozen", "/ws/app/.venv", nil},
		{"go.sum", "go", "go mod download", "/ws/.flare-tools/app/gomod", map[string]string{"GOMODCACHE": "/ws/.flare-tools/app/gomod", "GOFLAGS": "-modcacherw"}},
	} {
		t.Run(c.tool, func(t *testing.T) {
			sb := &fileSandbox{files: map[string]string{"/ws/app/" + c.lockfile: "lock v1", "/ws/app/package-lock.json.not": ""}}
			cache := &memCache{saved: map[string][]string{}, sb: sb}
			sb.exec = func(r dsl.ExecRequest) dsl.ExecResult {
				if r.Quiet { // the version probe
					return dsl.ExecResult{StdoutTail: "v22.1.0\n10.9.0\n"}
				}
				sb.files[c.path+"/installed"] = "yes" // the tool fills the cached paths
				return dsl.ExecResult{}
			}
			mk := func() *dsl.Ctx {
				return newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache })
			}
			in, err := dsl.InstallCached(mk(), "install", "/ws/app")
			key := dsl.CacheKey(c.tool, "v22.1.0 10.9.0", []byte("lock v1"))
			if err != nil || in.Tool != c.tool || in.Key != key || in.Hit || len(sb.commands) != 2 || sb.commands[1].Command != c.command ||
				cache.saved[key] == nil || in.Paths[0] != c.path {
				t.Fatalf("miss: %+v %v commands %+v", in, err, sb.commands)
			}
			for k, v := range c.env {
				if in.Env[k] != v || sb.commands[1].Env[k] != v {
					t.Fatalf("env %s: %+v / %+v", k, in.Env, sb.commands[1].Env)
				}
			}
			// Another execution on a fresh sandbox: restored, not installed.
			for p := range sb.files {
				if strings.HasPrefix(p, c.path) {
					delete(sb.files, p)
				}
			}
			in, err = dsl.InstallCached(mk(), "install", "/ws/app")
			if err != nil || !in.Hit || len(sb.commands) != 3 || !sb.commands[2].Quiet {
				t.Fatalf("hit: %+v %v %d commands", in, err, len(sb.commands))
			}
		})
	}
}

// TestInstallCacheKeyHasTheToolchainsVersion: node_modules installed under one node
// (native modules built for its ABI) is not restored under another: the version the
// tool's probe prints is part of the key. Fails if the key is the lockfile's alone.
func TestInstallCacheKeyHasTheToolchainsVersion(t *testing.T) {
	sb := &fileSandbox{files: map[string]string{"/ws/app/package-lock.json": "v1"}}
	cache := &memCache{saved: map[string][]string{}, sb: sb}
	node := "v20.0.0"
	sb.exec = func(r dsl.ExecRequest) dsl.ExecResult {
		if r.Quiet {
			return dsl.ExecResult{StdoutTail: node + "\n10.0.0\n"}
		}
		sb.files["/ws/app/node_modules/x"] = node
		return dsl.ExecResult{}
	}
	with := func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache }
	if in, err := dsl.InstallCached(newAttempt(dsltest.NewJournal(), nil, with), "install", "/ws/app"); err != nil || in.Hit {
		t.Fatalf("%+v %v", in, err)
	}
	delete(sb.files, "/ws/app/node_modules/x")
	node = "v22.0.0" // another image's node
	in, err := dsl.InstallCached(newAttempt(dsltest.NewJournal(), nil, with), "install", "/ws/app")
	if err != nil || in.Hit || !strings.Contains(in.Key, "v22.0.0") || len(cache.saved) != 2 {
		t.Fatalf("another node restored the first one's node_modules: %+v %v (saved %v)", in, err, cache.saved)
	}
}

func TestInstallCachedAgainAfterAReplayOnAFreshSandbox(t *testing.T) {
	sb := &fileSandbox{files: map[string]string{"/ws/app/package-lock.json": "v1"}}
	cache := &memCache{saved: map[string][]string{}, sb: sb}
	sb.exec = func(dsl.ExecRequest) dsl.ExecResult {
		sb.files["/ws/app/node_modules/x"] = "x"
		return dsl.ExecResult{}
	}
	j := dsltest.NewJournal()
	with := func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache }
	if _, err := dsl.InstallCached(newAttempt(j, nil, with), "install", "/ws/app"); err != nil {
		t.Fatal(err)
	}
	delete(sb.files, "/ws/app/node_modules/x") // the sandbox was replaced
	in, err := dsl.InstallCached(newAttempt(j, nil, with), "install", "/ws/app")
	if err != nil || !in.Hit || sb.files["/ws/app/node_modules/restored"] == "" {
		t.Fatalf("%+v %v", in, err)
	}
}

func TestInstallCachedWithoutALockfileDoesNothing(t *testing.T) {
	sb := &fileSandbox{files: map[string]string{"/ws/app/README.md": "x"}}
	in, err := dsl.InstallCached(newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox = sb }), "install", "/ws/app")
	if err != nil || in.Tool != "" || len(sb.commands) != 0 {
		t.Fatalf("%+v %v", in, err)
	}
}

func TestInstallFailureIsTheCommandsFailure(t *testing.T) {
	sb := &fileSandbox{files: map[string]string{"/ws/app/package-lock.json": "v1"}}
	sb.exec = func(dsl.ExecRequest) dsl.ExecResult { return dsl.ExecResult{ExitCode: 1, StderrTail: "npm ERR! 404"} }
	_, err := dsl.InstallCached(newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) {
		x.Sandbox, x.Cache = sb, &memCache{saved: map[string][]string{}, sb: sb}
	}), "install", "/ws/app")
	var cf *dsl.CommandFailed
	if !errors.As(err, &cf) || cf.StderrTail != "npm ERR! 404" {
		t.Fatal(err)
	}
}

func TestConfigReadsNeverFail(t *testing.T) {
	c := newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) {
		x.Config = dsltest.Config{"r.s": "hello", "r.n": "42", "r.bad": "x", "r.b": "true", "r.j": `{"a":[1,2]}`, "r.l": "a, b c"}
	})
	type J struct{ A []int }
	switch {
	case dsl.ConfigString(c, "r.s", "d") != "hello", dsl.ConfigString(c, "r.none", "d") != "d":
		t.Fatal("string")
	case dsl.ConfigInt(c, "r.n", 0) != 42, dsl.ConfigInt(c, "r.bad", 7) != 7:
		t.Fatal("int")
	case !dsl.ConfigBool(c, "r.b", false), dsl.ConfigBool(c, "r.bad", true) != true:
		t.Fatal("bool")
	case len(dsl.ConfigJSON(c, "r.j", J{}).A) != 2, dsl.ConfigJSON(c, "r.bad", J{A: []int{9}}).A[0] != 9:
		t.Fatal("json")
	case strings.Join(dsl.ConfigList(c, "r.l", nil), "|") != "a|b|c":
		t.Fatal("list")
	}
	if dsl.ConfigString(newAttempt(dsltest.NewJournal(), nil, nil), "r.s", "no store") != "no store" {
		t.Fatal("nil store")
	}
}

// recordingGitHub is dsl.GitHubAPI recording draft pull requests.
type recordingGitHub struct{ prs []dsl.DraftPullRequest }

func (g *recordingGitHub) Repository(context.Context, string) (dsl.Repository, error) {
	return dsl.Repository{}, nil
}
func (g *recordingGitHub) OpenPullRequests(context.Context, string) ([]dsl.PullRequest, error) {
	return nil, nil
}
func (g *recordingGitHub) OpenDraftPullRequest(_ context.Context, pr dsl.DraftPullRequest) (dsl.PullRequestResult, error) {
	g.prs = append(g.prs, pr)
	return dsl.PullRequestResult{Number: 3, Created: true, Branch: pr.HeadBranch, Files: len(pr.Files)}, nil
}

func TestRunReportPROpensOnlyWithSomethingToReport(t *testing.T) {
	gh := &recordingGitHub{}
	r := dsl.ReportPR{Repo: "acme/app", HeadBranch: "flare-dispatch/spec-drift-2026-05-01", Title: "docs: drift", Marker: "<!-- flare-dispatch: spec-drift-pr -->"}
	out, err := dsl.RunReportPR(newAttempt(dsltest.NewJournal(), nil, func(c *dsl.Ctx) { c.GitHubAPI = gh }), r, func(*dsl.Ctx) (dsl.Report, error) {
		return dsl.Report{Body: "nothing"}, nil
	})
	if err != nil || out.Opened || len(gh.prs) != 0 {
		t.Fatalf("empty report: %+v %v", out, err)
	}
	out, err = dsl.RunReportPR(newAttempt(dsltest.NewJournal(), nil, func(c *dsl.Ctx) { c.GitHubAPI = gh }), r, func(*dsl.Ctx) (dsl.Report, error) {
		return dsl.Report{Body: "drift found\n", Files: []dsl.FileChange{{Path: "specs/a.md", Content: "new"}}}, nil
	})
	if err != nil || !out.Opened || out.PR.Number != 3 || len(gh.prs) != 1 {
		t.Fatalf("report: %+v %v", out, err)
	}
	if pr := gh.prs[0]; pr.Body != "drift found\n\n<!-- flare-dispatch: spec-drift-pr -->" || pr.CommitMessage != "docs: drift" || pr.HeadBranch != r.HeadBranch {
		t.Fatalf("pull request %+v", pr)
	}
}

// treeArtifacts records UploadTree.
type treeArtifacts struct {
	name    string
	entries []dsl.TreeEntry
}

func (a *treeArtifacts) Upload(context.Context, string, string, string) (dsl.Artifact, error) {
	return dsl.Artifact{}, errors.New("unused")
}
func (a *treeArtifacts) UploadTree(_ context.Context, name string, e []dsl.TreeEntry) (dsl.Artifact, error) {
	a.name, a.entries = name, e
	return dsl.Artifact{Name: name, URL: "https://edge.test/v1/artifacts/e/" + name + "/", Dir: true}, nil
}
func (a *treeArtifacts) List(context.Context) ([]dsl.Artifact, error) { return nil, nil }

func TestStageWritebackWritesTheManifestAndFiles(t *testing.T) {
	sb := &fileSandbox{changes: []dsl.Change{
		{Path: "fixtures/a.json", Mode: "100644", Size: 3},
		{Path: "fixtures/gone.json", Deleted: true},
		{Path: "fixtures/run.sh", Mode: "100755"},
		{Path: "fixtures/link", Mode: "120000"},
	}}
	arts := &treeArtifacts{}
	st, err := dsl.StageWriteback(newAttempt(dsltest.NewJournal(), nil, func(c *dsl.Ctx) { c.Sandbox, c.Artifacts = sb, arts }), "stage", "/ws/app")
	if err != nil || st.Deleted != 1 || len(st.Paths) != 4 || st.URI == "" || arts.name != dsl.WritebackArtifact {
		t.Fatalf("%+v %v", st, err)
	}
	if len(arts.entries) != 3 || arts.entries[0].Path != "manifest.json" || arts.entries[1].Source != "/ws/app/fixtures/a.json" || !arts.entries[2].Executable {
		t.Fatalf("entries %+v", arts.entries)
	}
	var m dsl.WritebackManifest
	if err := json.Unmarshal(arts.entries[0].Data, &m); err != nil || len(m.Entries) != 4 || !m.Entries[1].Deleted || m.Entries[3].Mode != "120000" {
		t.Fatalf("manifest %s", arts.entries[0].Data)
	}
	// Nothing changed: no artifact.
	arts2 := &treeArtifacts{}
	st, err = dsl.StageWriteback(newAttempt(dsltest.NewJournal(), nil, func(c *dsl.Ctx) { c.Sandbox, c.Artifacts = &fileSandbox{}, arts2 }), "stage", "/ws/app")
	if err != nil || st.URI != "" || arts2.name != "" {
		t.Fatalf("no changes: %+v %v", st, err)
	}
}

func TestShardedRunsEveryIndexInOrder(t *testing.T) {
	c := newAttempt(dsltest.NewJournal(), nil, nil)
	out, err := dsl.Sharded(c, 5, 2, func(c *dsl.Ctx, i, n int) (string, error) {
		if i == 4 {
			return "", fmt.Errorf("shard %d broke", i)
		}
		return fmt.Sprintf("%d/%d", i, n), nil
	})
	if err == nil || err.Error() != "shard 4 broke" || strings.Join(out, ",") != "1/5,2/5,3/5,,5/5" {
		t.Fatalf("%v %v", out, err)
	}
}

func TestProbeHTTPCountsUnhealthyPaths(t *testing.T) {
	sb := &fileSandbox{exec: func(r dsl.ExecRequest) dsl.ExecResult {
		switch {
		case strings.Contains(r.Command, "/health'"):
			return dsl.ExecResult{StdoutTail: "500"}
		case strings.Contains(r.Command, "/down'"):
			return dsl.ExecResult{ExitCode: 7, StdoutTail: "000", StderrTail: "curl: (7) Failed to connect"}
		case strings.Contains(r.Command, "/moved'"):
			return dsl.ExecResult{StdoutTail: "301"}
		}
		return dsl.ExecResult{StdoutTail: "200"}
	}}
	p, err := dsl.ProbeHTTP(newAttempt(dsltest.NewJournal(), nil, func(c *dsl.Ctx) { c.Sandbox = sb }), "probe", "https://app.test/", []string{"/", "health", "/down", "/moved"})
	if err != nil || p.Checked != 4 || p.Failed != 2 {
		t.Fatalf("%+v %v", p, err)
	}
	if p.Results[1].Path != "/health" || p.Results[1].Status != 500 || p.Results[2].Error == "" || !p.Results[3].OK {
		t.Fatalf("%+v", p.Results)
	}
	if !strings.Contains(sb.commands[0].Command, "'https://app.test/'") {
		t.Fatalf("command %q", sb.commands[0].Command)
	}
}

func TestShellQuote(t *testing.T) {
	if got := dsl.ShellQuote("it's $HOME"); got != `'it'\''s $HOME'` {
		t.Fatal(got)
	}
}

func TestDefineRejectsABadWriteback(t *testing.T) {
	for _, w := range []*dsl.Writeback{
		{CommitMessage: "m"},
		{Branch: "b", BranchPrefix: "p", CommitMessage: "m"},
		{Branch: "b"},
		{Branch: "b", CommitMessage: "m", PR: &dsl.WritebackPR{}},
		{Branch: "b", CommitMessage: "m", PathAllowlist: []string{"/abs/**"}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%+v accepted", w)
				}
			}()
			dsl.Define(dsl.Spec{Name: "r", Version: "1.0.0", MaxDuration: time.Minute, Writeback: w}, func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })
		}()
	}
	w := &dsl.Writeback{BranchPrefix: "flare-dispatch/fix", CommitMessage: "m"}
	if got := w.HeadBranch("refresh-fixtures:acme_app:0123"); got != "flare-dispatch/fix-refresh-fixtures-acme_app-0123" || path.Base(got) == "" {
		t.Fatal(got)
	}
}
