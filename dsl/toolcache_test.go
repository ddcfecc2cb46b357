package dsl_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
)

// countingCache counts what reaches a memCache.
type countingCache struct {
	*memCache
	restores, saves atomic.Int32
}

func (c *countingCache) RestoreFallback(ctx context.Context, key string, prefixes, paths []string) (dsl.CacheResult, error) {
	c.restores.Add(1)
	return c.memCache.RestoreFallback(ctx, key, prefixes, paths)
}

func (c *countingCache) Save(ctx context.Context, key string, paths []string) (dsl.CacheResult, error) {
	c.saves.Add(1)
	return c.memCache.Save(ctx, key, paths)
}

// goSandbox is a checkout /ws/app of a Go module whose `go env` names a build cache
// inside the workspace and a module cache outside it (the host's).
func goSandbox() *fileSandbox {
	sb := &fileSandbox{files: map[string]string{"/ws/app/go.mod": "module x\n"}}
	sb.exec = func(r dsl.ExecRequest) dsl.ExecResult {
		if strings.HasPrefix(r.Command, "go env") {
			return dsl.ExecResult{StdoutTail: "go1.26.8\n/ws/.cache/go-build\n/host/go/pkg/mod\n"}
		}
		return dsl.ExecResult{ExitCode: 127}
	}
	return sb
}

// TestWarmCachesRestoresAndSavesOnlyAfterSuccess: a miss registers the save but does
// not store anything until the run succeeds; the next attempt on a fresh sandbox
// restores the key and saves nothing; the host's module cache (outside the workspace)
// is never touched. Fails if the save runs at restore time, or if paths outside the
// workspace are cached.
func TestWarmCachesRestoresAndSavesOnlyAfterSuccess(t *testing.T) {
	sb := goSandbox()
	cache := &countingCache{memCache: &memCache{saved: map[string][]string{}, sb: sb}}
	mk := func() *dsl.Ctx {
		return newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache })
	}
	c := mk()
	got := dsl.WarmCaches(c, "/ws/app", nil, nil)
	key, _ := dsl.ToolchainKey("go", "go1.26.8", []byte("module x\n"))
	if len(got) != 1 || got[0].Key != key || got[0].Restored || len(got[0].Paths) != 1 || got[0].Paths[0] != "/ws/.cache/go-build" {
		t.Fatalf("warm: %+v", got)
	}
	if cache.saves.Load() != 0 {
		t.Fatal("saved before the run succeeded")
	}
	dsl.RunSucceeded(c, context.Background())
	if p := cache.saved[key]; len(p) != 1 || p[0] != "/ws/.cache/go-build" {
		t.Fatalf("saved %v", cache.saved)
	}

	c = mk() // the next run, on a fresh sandbox: restored, nothing to save
	if got := dsl.WarmCaches(c, "/ws/app", nil, nil); len(got) != 1 || !got[0].Restored {
		t.Fatalf("restore: %+v", got)
	}
	dsl.RunSucceeded(c, context.Background())
	if cache.saves.Load() != 1 {
		t.Fatalf("%d saves, want 1", cache.saves.Load())
	}
}

// TestWarmCachesRestoresADirectoryOncePerAttempt: two workspaces of one attempt (shards
// in one sandbox) warm at once with nothing in the store; the shared build cache is
// looked up once and saved once, not twice over itself. Fails without the per-attempt
// record of handled directories (the second shard still finds the directory missing,
// as a miss leaves it until the build fills it); -race fails without the lock.
func TestWarmCachesRestoresADirectoryOncePerAttempt(t *testing.T) {
	sb := goSandbox()
	cache := &countingCache{memCache: &memCache{saved: map[string][]string{}, sb: sb}}
	c := newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache })
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { dsl.WarmCaches(c, "/ws/app", nil, nil) })
	}
	wg.Wait()
	dsl.RunSucceeded(c, context.Background())
	if r, s := cache.restores.Load(), cache.saves.Load(); r != 1 || s != 1 {
		t.Fatalf("%d restores and %d saves of one directory in one attempt, want 1 and 1", r, s)
	}
}

// TestWarmCachesRestoresOverTheImagesLayerButKeepsAWarmDirectory: a fresh sandbox's
// GOCACHE that holds only the image's layer (its .flare-image manifest: the Go image's
// pre-built standard library) is restored over; a build cache without one (a sandbox
// reused at the same commit) is warm and kept. Fails without the manifest check (the
// layer counts as warm and the repository's cache is never restored).
func TestWarmCachesRestoresOverTheImagesLayerButKeepsAWarmDirectory(t *testing.T) {
	key, _ := dsl.ToolchainKey("go", "go1.26.8", []byte("module x\n"))
	for _, c := range []struct {
		name, file  string
		wantRestore bool
	}{
		{"the image's layer", "/ws/.cache/go-build/" + dsl.ImageLayerManifest, true},
		{"a warm directory", "/ws/.cache/go-build/0a/0a11-d", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			sb := goSandbox()
			sb.files[c.file] = "x"
			cache := &countingCache{memCache: &memCache{saved: map[string][]string{key: {"/ws/.cache/go-build"}}, sb: sb}}
			x := newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache })
			got := dsl.WarmCaches(x, "/ws/app", nil, nil)
			if len(got) != 1 || got[0].Restored != c.wantRestore || (cache.restores.Load() == 1) != c.wantRestore {
				t.Fatalf("%+v after %d restores, want restored=%v", got, cache.restores.Load(), c.wantRestore)
			}
		})
	}
}

// TestWarmCachesSkipsTheDownloadStoreWhenTheInstallWasRestored: npm's cache serves
// only `npm ci`; when InstallCached restored node_modules nothing installs, so the
// store is neither restored nor saved (a second of a fresh sandbox's start, measured).
// After an install that ran it is restored as before. Fails without the forInstall
// check (a restore on the hit).
func TestWarmCachesSkipsTheDownloadStoreWhenTheInstallWasRestored(t *testing.T) {
	for _, hit := range []bool{true, false} {
		sb := &fileSandbox{files: map[string]string{"/ws/app/package-lock.json": "{}"}}
		sb.exec = func(r dsl.ExecRequest) dsl.ExecResult {
			return dsl.ExecResult{StdoutTail: "v22.1.0\n/ws/.npm\n"}
		}
		cache := &countingCache{memCache: &memCache{saved: map[string][]string{}, sb: sb}}
		x := newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache })
		got := dsl.WarmCaches(x, "/ws/app", nil, &dsl.Install{Tool: "npm", Hit: hit, Paths: []string{"/ws/app/node_modules"}})
		dsl.RunSucceeded(x, context.Background())
		if restores := cache.restores.Load() + cache.saves.Load(); len(got) != 1 || (restores == 0) != hit || (got[0].Skipped != "") != hit {
			t.Fatalf("install hit %v: %+v, %d restores and saves", hit, got, restores)
		}
	}
}

// TestNewWorkspaceRestoresTheDownloadStoreBeforeAnInstallThatRuns: npm's store serves
// `npm ci`, so an install that runs (nothing cached for its lockfile) finds it already
// restored. Fails if the store is warmed only after the install (it then exists, looks
// warm, and is neither restored nor ever saved), and if the logs npm writes into its
// cache directory on every call count as a warm store.
func TestNewWorkspaceRestoresTheDownloadStoreBeforeAnInstallThatRuns(t *testing.T) {
	// npm's probes have already written their logs into the store's directory.
	sb := &fileSandbox{files: map[string]string{"/ws/app/package-lock.json": "{}", "/ws/.npm/_logs/debug.log": "x"}}
	storeKey, _ := dsl.ToolchainKey("npm", "v22.1.0", []byte("{}"))
	cache := &memCache{saved: map[string][]string{storeKey: {"/ws/.npm"}}, sb: sb}
	storeAtInstall := ""
	sb.exec = func(r dsl.ExecRequest) dsl.ExecResult {
		switch {
		case strings.Contains(r.Command, "npm config get cache"):
			return dsl.ExecResult{StdoutTail: "v22.1.0\n/ws/.npm\n"}
		case r.Quiet: // the install key's version probe
			return dsl.ExecResult{StdoutTail: "v22.1.0\n10.9.0\n"}
		}
		storeAtInstall = sb.files["/ws/.npm/restored"]
		sb.files["/ws/.npm/_cacache/index"] = "downloaded"
		sb.files["/ws/app/node_modules/x"] = "installed"
		return dsl.ExecResult{}
	}
	c := newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache })
	w, err := dsl.NewWorkspace(c, dsl.WorkspaceOptions{Repo: "acme/app", SHA: "abc", Install: true})
	if err != nil || w.Install == nil || w.Install.Hit || storeAtInstall != storeKey {
		t.Fatalf("install %+v %v; the store at the install: %q, want restored from %s", w.Install, err, storeAtInstall, storeKey)
	}
}

// TestNewWorkspaceAdoptsThePrefetchedArchiveOnlyWhenRestoreWouldChooseIt: the newest
// Go archive, fetched while the checkout ran, serves the restore when it is the one
// RestoreFallback would pick: the key itself, or the newest of the same Go version while
// the key has no archive (then saved under the key after success). It is dropped when
// the key has an archive of its own, or when it was saved by another Go version; and
// it is dropped when nothing warms (a failed checkout). Each prefetch is adopted or
// dropped exactly once. Fails if the prefetched archive is taken whatever its key (a
// lockfile's cache restored for another), or if a fallback is no longer saved.
func TestNewWorkspaceAdoptsThePrefetchedArchiveOnlyWhenRestoreWouldChooseIt(t *testing.T) {
	key, fallback := dsl.ToolchainKey("go", "go1.26.8", []byte("module x\n"))
	other := fallback + "0123456789abcdef" // the same Go, another lockfile
	for _, c := range []struct {
		name, staged string
		saved        []string // keys with an archive
		wantAdopt    bool
		wantFrom     string // the key restored when it is not key
		wantSave     bool
	}{
		{"the key itself", key, []string{key}, true, "", false},
		{"the newest of the version, the key has none", other, []string{other}, true, other, true},
		{"the key has an archive of its own", other, []string{other, key}, false, "", false},
		{"another Go version", "tc-go-go1.25.0-0123456789abcdef", []string{"tc-go-go1.25.0-0123456789abcdef"}, false, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			sb := goSandbox()
			mem := &memCache{saved: map[string][]string{}, sb: sb}
			for _, k := range c.saved {
				mem.saved[k] = []string{"/ws/.cache/go-build"}
			}
			st := &memStaged{m: mem, key: c.staged}
			mem.staged = map[string]*memStaged{"tc-go-": st}
			cache := &countingCache{memCache: mem}
			x := newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) { x.Sandbox, x.Cache = sb, cache })
			w, err := dsl.NewWorkspace(x, dsl.WorkspaceOptions{Repo: "acme/app", SHA: "abc"})
			if err != nil || len(w.Toolchains) != 1 {
				t.Fatalf("%+v %v", w, err)
			}
			tc := w.Toolchains[0]
			if got := st.adopted.Load() == 1; got != c.wantAdopt || st.adopted.Load()+st.dropped.Load() != 1 {
				t.Fatalf("adopted %d, dropped %d; want adopted: %v", st.adopted.Load(), st.dropped.Load(), c.wantAdopt)
			}
			if tc.Restore.Prefetched != c.wantAdopt || tc.Key != key || tc.Restore.FromKey != c.wantFrom {
				t.Fatalf("restore %+v, want from %q", tc.Restore, c.wantFrom)
			}
			if c.wantAdopt && cache.restores.Load() != 0 {
				t.Fatalf("%d fallback restores beside the prefetched archive", cache.restores.Load())
			}
			dsl.RunSucceeded(x, context.Background())
			if saved := cache.saves.Load() == 1; saved != c.wantSave {
				t.Fatalf("saved %v, want %v", saved, c.wantSave)
			}
		})
	}
	t.Run("nothing warms", func(t *testing.T) {
		sb := goSandbox()
		mem := &memCache{saved: map[string][]string{key: {"/ws/.cache/go-build"}}, sb: sb}
		st := &memStaged{m: mem, key: key}
		mem.staged = map[string]*memStaged{"tc-go-": st}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		x := newAttempt(dsltest.NewJournal(), nil, func(x *dsl.Ctx) {
			x.Context, x.Sandbox, x.Cache = ctx, failingCheckout{sb, cancel}, mem
		})
		if _, err := dsl.NewWorkspace(x, dsl.WorkspaceOptions{Repo: "acme/app", SHA: "abc"}); err == nil {
			t.Fatal("the checkout did not fail")
		}
		if st.adopted.Load() != 0 || st.dropped.Load() != 1 {
			t.Fatalf("adopted %d, dropped %d after a failed checkout, want 0 and 1", st.adopted.Load(), st.dropped.Load())
		}
	})
}

// failingCheckout is a sandbox whose checkout fails and ends the attempt (no retry
// after the step's backoff).
type failingCheckout struct {
	*fileSandbox
	end func()
}

func (f failingCheckout) Checkout(context.Context, string, string) (string, error) {
	f.end()
	return "", &dsl.CheckoutFailed{Repo: "acme/app", SHA: "abc", Cause: "unreachable"}
}
