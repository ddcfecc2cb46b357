package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

var fixtures = &dsl.Writeback{
	Branch: "flare-dispatch/refresh-fixtures", CommitMessage: "chore: refresh fixtures",
	PR:            &dsl.WritebackPR{Title: "chore: refresh fixtures"},
	PathAllowlist: []string{"fixtures/**", "**/__fixtures__/**", "**/*.snap"},
}

func entries(paths ...string) dsl.WritebackManifest {
	var m dsl.WritebackManifest
	for _, p := range paths {
		e := dsl.WritebackEntry{Path: p}
		if rest, ok := strings.CutPrefix(p, "-"); ok {
			e = dsl.WritebackEntry{Path: rest, Deleted: true}
		}
		m.Entries = append(m.Entries, e)
	}
	return m
}

func sizeOf(n int64) func(string) (int64, bool) {
	return func(p string) (int64, bool) { return n, !strings.HasPrefix(path.Base(p), "missing") }
}

func TestWritebackValidationListsEveryReason(t *testing.T) {
	m := entries("fixtures/ok.json", "../etc/passwd", "/etc/passwd", "fixtures//a.json", "fixtures/./a.json",
		".github/workflows/ci.yml", "src/main.go", "fixtures/ok.json", `C:\x`, "fixtures/a\\b", "fixtures/.git/config",
		"", "fixtures/missing.json", "-fixtures/gone.json")
	m.Entries = append(m.Entries, dsl.WritebackEntry{Path: "fixtures/link", Mode: "120000"}, dsl.WritebackEntry{Path: "fixtures/dev", Mode: "020000"})
	writes, reasons := edge.ValidateWriteback(fixtures, m, sizeOf(10))
	if writes != nil {
		t.Fatalf("writes %v despite reasons", writes)
	}
	want := []string{
		"path-traversal: `../etc/passwd`",
		"absolute-path: `/etc/passwd`",
		"dot-segment: `fixtures//a.json`",
		"dot-segment: `fixtures/./a.json`",
		"workflows: `.github/workflows/ci.yml`",
		"not-allowlisted: `src/main.go`",
		"duplicate: `fixtures/ok.json`",
		"invalid-character: `C:\\x`",
		"invalid-character: `fixtures/a\\b`",
		"git-internal: `fixtures/.git/config`",
		"empty-path: entry 11",
		"missing-content: `fixtures/missing.json`",
		"symlink: `fixtures/link`",
		"unsupported-mode: `fixtures/dev` (020000)",
	}
	got := strings.Join(reasons, "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("reasons lack %q", w)
		}
	}
	if len(reasons) != len(want) {
		t.Errorf("%d reasons, want %d:\n%s", len(reasons), len(want), got)
	}
}

func TestWritebackCaps(t *testing.T) {
	var paths []string
	for i := range 201 {
		paths = append(paths, fmt.Sprintf("fixtures/f%03d.json", i))
	}
	_, reasons := edge.ValidateWriteback(fixtures, entries(paths...), sizeOf(1))
	if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "too-many-files: 201 entries (at most 200)") {
		t.Fatalf("201 files: %v", reasons)
	}
	writes, reasons := edge.ValidateWriteback(fixtures, entries(paths[:200]...), sizeOf(1))
	if len(reasons) != 0 || len(writes) != 200 {
		t.Fatalf("200 files: %d writes, %v", len(writes), reasons)
	}
	_, reasons = edge.ValidateWriteback(fixtures, entries("fixtures/a", "fixtures/b", "-fixtures/c"), sizeOf(dsl.DefaultWritebackMaxBytes/2+1))
	if len(reasons) != 1 || !strings.HasPrefix(reasons[0], "too-large: 5242882 bytes written (at most 5242880)") {
		t.Fatalf("too large: %v", reasons)
	}
	// Deletions weigh nothing; workflows are allowed when the run opts in.
	opt := *fixtures
	opt.AllowWorkflows, opt.PathAllowlist = true, nil
	writes, reasons = edge.ValidateWriteback(&opt, entries(".github/workflows/ci.yml", "-fixtures/x"), sizeOf(dsl.DefaultWritebackMaxBytes))
	if len(reasons) != 0 || len(writes) != 2 {
		t.Fatalf("opted in: %v %v", writes, reasons)
	}
}

func TestWritebackGlobs(t *testing.T) {
	for _, c := range []struct {
		glob, path string
		match      bool
	}{
		{"fixtures/**", "fixtures/a.json", true},
		{"fixtures/**", "fixtures/deep/er/a.json", true},
		{"fixtures/**", "fixturesx/a.json", false},
		{"fixtures/**", "src/fixtures/a.json", false},
		{"**/__fixtures__/**", "__fixtures__/a", true},
		{"**/__fixtures__/**", "ui/x/__fixtures__/a/b", true},
		{"**/*.snap", "a.snap", true},
		{"**/*.snap", "ui/deep/a.snap", true},
		{"**/*.snap", "ui/a.snapx", false},
		{"src/*.go", "src/a.go", true},
		{"src/*.go", "src/x/a.go", false},
		{"docs/**/index.md", "docs/index.md", true},
		{"docs/**/index.md", "docs/a/b/index.md", true},
		{"a?.txt", "ab.txt", true},
		{"a.txt", "abtxt", false},
	} {
		w := &dsl.Writeback{Branch: "b", CommitMessage: "m", PathAllowlist: []string{c.glob}}
		_, reasons := edge.ValidateWriteback(w, entries(c.path), sizeOf(1))
		if got := len(reasons) == 0; got != c.match {
			t.Errorf("glob %q path %q: match %v, want %v (%v)", c.glob, c.path, got, c.match, reasons)
		}
	}
}

func TestParseWritebackManifestIsStrict(t *testing.T) {
	for _, bad := range []string{``, `[]`, `{}`, `{"entries":[{"path":"a","extra":1}]}`, `{"entries":[]} {}`, `{"entries":[{"path":3}]}`} {
		if _, err := edge.ParseWritebackManifest([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	m, err := edge.ParseWritebackManifest([]byte(`{"entries":[{"path":"fixtures/a","mode":"100755"},{"path":"fixtures/b","deleted":true}]}`))
	if err != nil || len(m.Entries) != 2 || m.Entries[0].Mode != "100755" || !m.Entries[1].Deleted {
		t.Fatalf("%+v %v", m, err)
	}
}

// FuzzValidateWriteback: whatever the manifest, what is accepted stays inside the
// repository, inside the allowlist, out of .github/workflows, and within the caps.
func FuzzValidateWriteback(f *testing.F) {
	f.Add([]byte(`{"entries":[{"path":"fixtures/a.json"},{"path":"../x"}]}`), int64(10))
	f.Add([]byte(`{"entries":[{"path":"fixtures/./a"},{"path":"fixtures/b","deleted":true}]}`), int64(1<<20))
	f.Add([]byte(`{"entries":[{"path":"ui/__fixtures__/.git/x"},{"path":"x.snap","mode":"100755"}]}`), int64(3))
	f.Add([]byte(`{"entries":[{"path":".github/workflows/a.snap"}]}`), int64(0))
	f.Fuzz(func(t *testing.T, raw []byte, size int64) {
		m, err := edge.ParseWritebackManifest(raw)
		if err != nil {
			return
		}
		if size < 0 {
			size = -size
		}
		writes, reasons := edge.ValidateWriteback(fixtures, m, func(string) (int64, bool) { return size, true })
		if len(reasons) > 0 {
			if writes != nil {
				t.Fatal("writes returned with reasons")
			}
			return
		}
		if len(writes) > dsl.DefaultWritebackMaxFiles {
			t.Fatalf("%d files accepted", len(writes))
		}
		var total int64
		seen := map[string]bool{}
		for _, w := range writes {
			p := w.Path
			if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || strings.Contains(p, "\\") || seen[p] {
				t.Fatalf("accepted path %q escapes or repeats", p)
			}
			for seg := range strings.SplitSeq(p, "/") {
				if seg == "" || seg == "." || seg == ".." || strings.EqualFold(seg, ".git") {
					t.Fatalf("accepted path %q has segment %q", p, seg)
				}
			}
			if strings.HasPrefix(strings.ToLower(p), ".github/workflows/") {
				t.Fatalf("accepted workflow %q", p)
			}
			// "/**" is any depth including none: "fixtures" itself is inside "fixtures/**".
			if p != "fixtures" && !strings.HasPrefix(p, "fixtures/") && !strings.Contains("/"+p+"/", "/__fixtures__/") && !strings.HasSuffix(p, ".snap") {
				t.Fatalf("accepted %q outside the allowlist", p)
			}
			seen[p] = true
			if !w.Deleted {
				total += size
			}
		}
		if total > dsl.DefaultWritebackMaxBytes {
			t.Fatalf("%d bytes accepted", total)
		}
	})
}

// ---- the writeback as the edge performs it after a success ----

// memBlobs is edge.Blobs in memory.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
	ct map[string]string
}

func newBlobs() *memBlobs { return &memBlobs{m: map[string][]byte{}, ct: map[string]string{}} }

func (b *memBlobs) Put(_ context.Context, key string, r io.Reader, meta edge.BlobMeta) error {
	data, err := io.ReadAll(r)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[key], b.ct[key] = data, meta.ContentType
	return err
}

func (b *memBlobs) put(key, body string) {
	b.Put(context.Background(), key, strings.NewReader(body), edge.BlobMeta{})
}

func (b *memBlobs) Get(_ context.Context, key string) (io.ReadCloser, edge.BlobMeta, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.m[key]
	if !ok {
		return nil, edge.BlobMeta{}, fmt.Errorf("%s: %w", key, edge.ErrBlobNotFound)
	}
	return io.NopCloser(strings.NewReader(string(data))), edge.BlobMeta{Size: int64(len(data)), ContentType: b.ct[key], ETag: fmt.Sprintf(`"%x"`, len(data))}, nil
}

func (b *memBlobs) Head(ctx context.Context, key string) (edge.BlobMeta, error) {
	_, meta, err := b.Get(ctx, key)
	return meta, err
}

func (b *memBlobs) List(_ context.Context, prefix string) ([]edge.BlobInfo, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []edge.BlobInfo
	for k, v := range b.m {
		if strings.HasPrefix(k, prefix) {
			out = append(out, edge.BlobInfo{Key: k, Size: int64(len(v))})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (b *memBlobs) Delete(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, key)
	return nil
}

// recordingGitHub is edge.GitHubAPI recording pull requests.
type recordingGitHub struct {
	mu    sync.Mutex
	specs []edge.PullRequestSpec
	fail  error
}

func (g *recordingGitHub) OpenPullRequest(_ context.Context, _ int64, _ string, pr edge.PullRequestSpec) (edge.PullRequestOutcome, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail != nil {
		return edge.PullRequestOutcome{}, g.fail
	}
	g.specs = append(g.specs, pr)
	o := edge.PullRequestOutcome{Branch: pr.Branch, Base: pr.Base, Number: 7, URL: "https://github.test/acme/app/pull/7", Created: len(g.specs) == 1}
	for _, f := range pr.Files {
		if f.Delete {
			o.Deletions++
		} else {
			o.Files++
		}
	}
	return o, nil
}

func (g *recordingGitHub) Repository(context.Context, int64, string) (edge.RepositoryInfo, error) {
	return edge.RepositoryInfo{FullName: "acme/app", DefaultBranch: "main"}, nil
}

func (g *recordingGitHub) OpenPullRequests(context.Context, int64, string) ([]edge.PullRequestInfo, error) {
	return []edge.PullRequestInfo{{Number: 7, Title: "t", Head: "flare-dispatch/x", Base: "main"}}, nil
}

// writebackRun declares the fixtures writeback.
var writebackRun = dsl.Define(dsl.Spec{Name: "refresh-fixtures", Version: "1.0.0", MaxDuration: 60e9, Writeback: fixtures},
	func(*dsl.Ctx, struct{}) (struct{}, error) { return struct{}{}, nil })

func writebackServer(gh edge.GitHubAPI) (*edge.Server, *memBlobs, *memMeta, *memKV) {
	bl, meta, kv := newBlobs(), newMeta(), newKV()
	s := edge.New(edge.Deps{Config: edge.Config{HMACSecret: "test-secret-0123456789"}, Runs: dsl.NewRegistry(writebackRun),
		Meta: meta, Blobs: bl, KV: kv, Actors: newDSLActors(), GitHub: gh})
	return s, bl, meta, kv
}

func stage(bl *memBlobs, exec, manifest string, files map[string]string) {
	pre := "artifacts/" + exec + "/writeback/"
	bl.put(pre+"manifest.json", manifest)
	for p, body := range files {
		bl.put(pre+"files/"+p, body)
	}
}

func succeed(t *testing.T, s *edge.Server, meta *memMeta, kv *memKV, exec string) edge.CheckReport {
	t.Helper()
	if _, ok := meta.execs[exec]; !ok {
		p, _ := json.Marshal(edge.Params{Exec: exec, Run: "refresh-fixtures", Repo: "acme/app", Ref: "refs/heads/main", InstallationID: 5})
		meta.CreateExecution(context.Background(), edge.Execution{ID: exec, Run: "refresh-fixtures", Repo: "acme/app", Input: p})
	}
	s.Perform(context.Background(), actors.RunAddr(exec), actors.Progress{Exec: exec, Status: actors.StatusSuccess, Output: json.RawMessage(`{}`)})
	var r edge.CheckReport
	if err := json.Unmarshal([]byte(kv.get("check-run/"+exec)), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWritebackCommitsOnceAfterSuccess(t *testing.T) {
	gh := &recordingGitHub{}
	s, bl, meta, kv := writebackServer(gh)
	stage(bl, "e1", `{"entries":[{"path":"fixtures/a.json"},{"path":"fixtures/run.sh","mode":"100755"},{"path":"fixtures/old.json","deleted":true}]}`,
		map[string]string{"fixtures/a.json": `{"v":2}`, "fixtures/run.sh": "#!/bin/sh\n"})
	r := succeed(t, s, meta, kv, "e1")
	if r.Conclusion != "success" || !strings.Contains(r.Summary, "\n\nwriteback opened PR [#7](https://github.test/acme/app/pull/7) (2 file(s), 1 deletion(s))\n\n**Cost**") {
		t.Fatalf("check %+v", r)
	}
	if len(gh.specs) != 1 {
		t.Fatalf("%d pull requests", len(gh.specs))
	}
	spec := gh.specs[0]
	if spec.Branch != "flare-dispatch/refresh-fixtures" || spec.Base != "main" || spec.PR == nil || !spec.PR.Draft || len(spec.Files) != 3 ||
		string(spec.Files[0].Content) != `{"v":2}` || !spec.Files[1].Executable || !spec.Files[2].Delete {
		t.Fatalf("spec %+v", spec)
	}
	// Reporting the success again (a recovered host) does not commit again.
	if r := succeed(t, s, meta, kv, "e1"); !strings.Contains(r.Summary, "writeback opened PR [#7]") || len(gh.specs) != 1 {
		t.Fatalf("second report: %d commits, %s", len(gh.specs), r.Summary)
	}
}

func TestWritebackOutcomesNeverTurnTheCheckRed(t *testing.T) {
	cases := []struct {
		name     string
		gh       edge.GitHubAPI
		manifest string
		want     string
	}{
		{"no manifest", &recordingGitHub{}, "", "writeback skipped — no writeback manifest produced"},
		{"no changes", &recordingGitHub{}, `{"entries":[]}`, "writeback skipped — no changes"},
		{"malformed", &recordingGitHub{}, `{"entries":[{"path":1}]}`, "writeback rejected — malformed-manifest: "},
		{"rejected", &recordingGitHub{}, `{"entries":[{"path":"../x"},{"path":"src/a.go"}]}`, "writeback rejected — path-traversal: `../x`; not-allowlisted: `src/a.go`"},
		{"no credentials", nil, `{"entries":[{"path":"fixtures/gone.json","deleted":true}]}`, "writeback skipped — GitHub App credentials not configured on this deploy"},
		{"github fails", &recordingGitHub{fail: &edge.GitHubError{Status: 403, Reason: "other", Message: "Resource not accessible by integration"}},
			`{"entries":[{"path":"fixtures/gone.json","deleted":true}]}`, "writeback rejected — writeback errored — see the edge's logs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, bl, meta, kv := writebackServer(c.gh)
			if c.manifest != "" {
				stage(bl, "e2", c.manifest, nil)
			}
			r := succeed(t, s, meta, kv, "e2")
			if r.Conclusion != "success" || !strings.Contains(r.Summary, c.want) {
				t.Fatalf("check %s:\n%s", r.Conclusion, r.Summary)
			}
		})
	}
}
