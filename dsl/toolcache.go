package dsl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
	"sync"
	"time"
)

// Toolchain caches: the directories a toolchain fills while a run builds (Go's build
// and module caches, npm's and pnpm's stores, Cargo's registry and target, uv's cache).
// A Container starts empty, so without them every run pays the cold compile. They are
// restored when a workspace is prepared and saved once the run has succeeded
// (OnSuccess), keyed by the toolchain's version and the lockfile's hash, with the newest
// archive of the same toolchain version as the fallback.

// ImageLayerManifest names the file an image writes into a cache directory it
// pre-built (sandbox-images/go-layer.sh): the entries it holds, one relative path a
// line. Such a directory is the image's layer: a restore merges over it instead of
// replacing it, and a save archives only the entries not listed (content-addressed
// entries: the same name is the same content).
const ImageLayerManifest = ".flare-image"

// toolchain is one toolchain WarmCaches knows: found by a marker file in the checkout,
// asked for its version and directories by probe (a shell command that prints the
// version on its first line and one directory per following line).
type toolchain struct {
	name    string
	markers []string // the first that exists is the lockfile hashed into the key
	probe   string
	// forInstall: its directories serve only the package manager's install (a download
	// store), so a run whose install InstallCached restored does not need them.
	forInstall bool
	// content is the entry whose presence in a directory means it holds a cache ("":
	// the directory itself). npm writes _logs into its cache directory on every call,
	// the probes' own included, so only _cacache says an earlier run filled it.
	content string
}

var toolchains = []toolchain{
	{name: "go", markers: []string{"go.sum", "go.mod"}, probe: `go env GOVERSION GOCACHE GOMODCACHE`},
	{name: "pnpm", markers: []string{"pnpm-lock.yaml"}, probe: `pnpm --version && pnpm store path`, forInstall: true},
	{name: "npm", markers: []string{"package-lock.json"}, probe: `node --version && npm config get cache`, forInstall: true, content: "_cacache"},
	{name: "cargo", markers: []string{"Cargo.lock"},
		probe: `cargo --version && h="${CARGO_HOME:-$HOME/.cargo}" && echo "$h/registry" && echo "$h/git" && echo "${CARGO_TARGET_DIR:-$PWD/target}"`},
	{name: "uv", markers: []string{"uv.lock"}, probe: `uv --version && uv cache dir`, forInstall: true},
}

// ToolchainCache is what WarmCaches did for one toolchain.
type ToolchainCache struct {
	Tool     string      `json:"tool"`
	Version  string      `json:"version"`
	Key      string      `json:"key"`
	Paths    []string    `json:"paths"`
	Restore  CacheResult `json:"restore"`
	Skipped  string      `json:"skipped,omitempty"` // why nothing was restored or will be saved
	Restored bool        `json:"restored,omitempty"`
}

// ToolchainKey is the key of a toolchain's cache: tc-<tool>-<version>-<sha256 of the
// lockfile, 16 hex digits>; its fallback prefix is everything before the hash.
func ToolchainKey(tool, version string, lockfile []byte) (key, fallback string) {
	sum := sha256.Sum256(lockfile)
	fallback = "tc-" + tool + "-" + keySafe(version) + "-"
	return fallback + hex.EncodeToString(sum[:8]), fallback
}

// CacheFamily is the part of a cache key (ToolchainKey's or CacheKey's) that names its
// tool, "tc-go-" or "npm-": the archives one tool accumulates across versions and
// lockfiles, among which the cache keeps the newest few (agent/cache Keep).
func CacheFamily(key string) string {
	tc, rest := "", key
	if r, ok := strings.CutPrefix(key, "tc-"); ok {
		tc, rest = "tc-", r
	}
	tool, _, ok := strings.Cut(rest, "-")
	if !ok {
		return ""
	}
	return tc + tool + "-"
}

// keySafe keeps [A-Za-z0-9._] of s (at most 40), so any version text fits a cache key.
func keySafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
		case r == ' ' || r == '-' || r == '/':
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// WarmCaches restores the toolchain caches of the checkout at dir and arranges for
// them to be saved when the run succeeds. It is inline, not a step: the directories
// belong to this sandbox, and a new attempt on a fresh sandbox needs them again.
//
// Only directories inside the sandbox's workspace (the checkout's parent) are touched:
// a directory the host chose for the sandbox (a GOCACHE passed in from `flare up`'s
// environment) is the host's, never cleared or archived. A directory that already has
// files (a sandbox reused for the same commit) is kept as it is. installed is what
// InstallCached did (nil: no install): its directories are left to it, and when it
// restored them, a package manager's download store is not restored at all (nothing
// will install). Failures of the cache are logged and the run goes on cold: a cache
// makes a run faster, never fails it.
func WarmCaches(c *Ctx, dir string, env map[string]string, installed *Install) []ToolchainCache {
	if c.Cache == nil || c.Sandbox == nil {
		return nil
	}
	ws := path.Dir(dir)
	// Workspaces of one run (shards in one sandbox) share the toolchains' directories:
	// one restore at a time, and a directory handled once per attempt.
	st := c.state()
	st.warmMu.Lock()
	defer st.warmMu.Unlock()
	var skip []string
	hit := false
	if installed != nil {
		skip, hit = installed.Paths, installed.Hit
	}
	var out []ToolchainCache
	for _, t := range toolchains {
		tc, ok := warmOne(c, t, dir, ws, env, skip, hit)
		if ok {
			out = append(out, tc)
		}
	}
	return out
}

// warmStores restores the download stores (forInstall toolchains: npm's, pnpm's, uv's)
// of the checkout at dir before its install runs: after the install they would already
// exist, look warm and never be saved. WarmCaches then finds them handled.
func warmStores(c *Ctx, dir string, env map[string]string, skip []string) {
	if c.Cache == nil {
		return
	}
	st := c.state()
	st.warmMu.Lock()
	defer st.warmMu.Unlock()
	for _, t := range toolchains {
		if t.forInstall {
			warmOne(c, t, dir, path.Dir(dir), env, skip, false)
		}
	}
}

func warmOne(c *Ctx, t toolchain, dir, ws string, env map[string]string, skip []string, installHit bool) (ToolchainCache, bool) {
	var lock []byte
	for _, m := range t.markers {
		p := path.Join(dir, m)
		if ok, err := c.Sandbox.Exists(c, p); err != nil || !ok {
			continue
		}
		b, err := c.Sandbox.ReadFile(c, p)
		if err != nil {
			return ToolchainCache{}, false
		}
		lock = b
		break
	}
	if lock == nil {
		return ToolchainCache{}, false
	}
	tc := ToolchainCache{Tool: t.name}
	if t.forInstall && installHit {
		tc.Skipped = "the install was restored: its download store is not needed"
		return tc, true
	}
	res, err := c.Sandbox.Exec(c, ExecRequest{Dir: dir, Command: t.probe, Env: env, Timeout: time.Minute, Quiet: true})
	lines := strings.Split(strings.TrimSpace(res.StdoutTail), "\n")
	if err != nil || res.ExitCode != 0 || len(lines) < 2 {
		tc.Skipped = "the toolchain is not installed or did not answer"
		c.logger().Info("toolchain cache skipped", "tool", t.name, "reason", tc.Skipped)
		return tc, true
	}
	tc.Version = strings.TrimSpace(lines[0])
	for _, p := range lines[1:] {
		p = path.Clean(strings.TrimSpace(p))
		if strings.HasPrefix(p, ws+"/") && !coveredBy(p, skip) {
			tc.Paths = append(tc.Paths, p)
		}
	}
	key, fallback := ToolchainKey(t.name, tc.Version, lock)
	tc.Key = key
	if len(tc.Paths) == 0 {
		tc.Skipped = "its directories are the host's, outside the sandbox's workspace"
		c.logger().Info("toolchain cache skipped", "tool", t.name, "reason", tc.Skipped)
		return tc, true
	}
	warm := false
	for _, p := range tc.Paths {
		if c.state().warmed[p] {
			warm = true
		} else if ok, err := c.Sandbox.Exists(c, path.Join(p, t.content)); err == nil && ok {
			// The image's own layer (a Go image's pre-built standard library) is not a
			// warm cache of this repository: the restore merges over it.
			if layer, err := c.Sandbox.Exists(c, path.Join(p, ImageLayerManifest)); err != nil || !layer {
				warm = true
			}
		}
		c.state().warmed[p] = true
	}
	if warm {
		tc.Skipped = "already warm in this sandbox"
	} else {
		tc.Restore, err = restoreToolchain(c, t.name, key, fallback, tc.Paths)
		if err != nil {
			c.logger().Warn("toolchain cache restore failed; building cold", "tool", t.name, "key", key, "err", err)
		}
		tc.Restored = tc.Restore.Hit
		c.logger().Info("toolchain cache", "tool", t.name, "key", key, "hit", tc.Restore.Hit, "from", tc.Restore.FromKey,
			"prefetched", tc.Restore.Prefetched, "bytes", tc.Restore.Bytes, "durationMs", tc.Restore.DurationMs)
	}
	// Saved when this key's archive was not what came back: a miss, or a fallback that
	// the run has now brought up to date with this lockfile.
	if !warm && (!tc.Restore.Hit || tc.Restore.FromKey != "") {
		paths := tc.Paths
		c.OnSuccess(func(ctx context.Context) {
			s, err := c.Cache.Save(ctx, key, paths)
			if err != nil {
				c.logger().Warn("toolchain cache save failed; the next run builds cold", "tool", t.name, "key", key, "err", err)
				return
			}
			c.logger().Info("toolchain cache saved", "tool", t.name, "key", key, "bytes", s.Bytes, "readOnly", s.ReadOnly, "durationMs", s.DurationMs)
		})
	}
	return tc, true
}

// restoreToolchain is RestoreFallback of key with fallback, served by the archive
// prefetched for the tool (startPrefetch) when that is the one RestoreFallback would
// restore: key itself, or the newest under fallback while key has no archive. Otherwise
// the prefetched files are dropped and the store is asked, as without a prefetch.
func restoreToolchain(c *Ctx, tool, key, fallback string, paths []string) (CacheResult, error) {
	p := takePrefetched(c, tool)
	if p == nil {
		return c.Cache.RestoreFallback(c, key, []string{fallback}, paths)
	}
	from := p.Key()
	if from != key && strings.HasPrefix(from, fallback) {
		// The newest of the tool's version; key itself may still have an (older) archive.
		res, err := c.Cache.Restore(c, key, paths)
		if err != nil || res.Hit {
			p.Drop()
			return res, err
		}
	} else if from != key {
		p.Drop() // another toolchain version's
		return c.Cache.RestoreFallback(c, key, []string{fallback}, paths)
	}
	res, err := p.Adopt(c, paths)
	if err != nil {
		c.logger().Warn("prefetched toolchain cache unusable; restoring again", "tool", tool, "key", from, "err", err)
		return c.Cache.RestoreFallback(c, key, []string{fallback}, paths)
	}
	if from != key {
		res.Key, res.FromKey = key, from
	}
	return res, nil
}

// prefetchJob is one toolchain family's Cache.Prefetch, running beside the checkout.
type prefetchJob struct {
	done   chan struct{}
	staged Prefetched // set before done closes; taken (nil, under warmMu) once adopted or dropped
}

// startPrefetch starts, once per attempt, fetching the newest archive of each toolchain
// whose cache a build fills (not the download stores: only an install reads them) while
// the checkout runs: the key needs the checkout's lockfile, but the newest archive is
// the one a run of an unchanged lockfile restores, and fetching it beside the checkout
// hides its download and extraction. finish waits for the fetches and drops whatever
// WarmCaches did not adopt; the caller defers it.
func startPrefetch(c *Ctx) (finish func()) {
	if c.Cache == nil || c.Sandbox == nil {
		return func() {}
	}
	st := c.state()
	st.warmMu.Lock()
	defer st.warmMu.Unlock()
	if st.prefetch != nil {
		return func() {}
	}
	st.prefetch = map[string]*prefetchJob{}
	ctx, cancel := context.WithCancel(c)
	for _, t := range toolchains {
		if t.forInstall {
			continue
		}
		j := &prefetchJob{done: make(chan struct{})}
		st.prefetch[t.name] = j
		go func() {
			defer close(j.done)
			staged, err := c.Cache.Prefetch(ctx, "tc-"+t.name+"-")
			if err != nil && ctx.Err() == nil {
				c.logger().Warn("toolchain cache prefetch failed", "tool", t.name, "err", err)
			}
			j.staged = staged
		}()
	}
	return func() {
		cancel() // what is still fetching is not needed any more
		st.warmMu.Lock()
		defer st.warmMu.Unlock()
		for name := range st.prefetch {
			if p := takePrefetched(c, name); p != nil {
				p.Drop()
			}
		}
	}
}

// takePrefetched waits for the tool's prefetch and takes what it staged (nil: nothing,
// none started, or already taken). st.warmMu is held.
func takePrefetched(c *Ctx, tool string) Prefetched {
	j := c.state().prefetch[tool]
	if j == nil {
		return nil
	}
	<-j.done // Prefetch ends with its context, which ends with the attempt's
	p := j.staged
	j.staged = nil
	return p
}

func coveredBy(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") || strings.HasPrefix(d, p+"/") {
			return true
		}
	}
	return false
}

// attemptState is what the toolchain caches keep per attempt: the OnSuccess hooks,
// and the directories WarmCaches has handled (under warmMu).
type attemptState struct {
	mu    sync.Mutex
	hooks []func(context.Context)

	warmMu   sync.Mutex
	warmed   map[string]bool
	prefetch map[string]*prefetchJob // by toolchain, set once by startPrefetch (under warmMu)
}

func (c *Ctx) state() *attemptState {
	if h := c.success.Load(); h != nil {
		return h
	}
	c.success.CompareAndSwap(nil, &attemptState{warmed: map[string]bool{}})
	return c.success.Load()
}

// OnSuccess registers f to run after the run body returns without error, before the
// agent reports the end (RunSucceeded). Hooks run in registration order.
func (c *Ctx) OnSuccess(f func(context.Context)) {
	h := c.state()
	h.mu.Lock()
	h.hooks = append(h.hooks, f)
	h.mu.Unlock()
}

// RunSucceeded runs the OnSuccess hooks with ctx; the agent calls it once the run body
// has returned without error. Their failures are theirs to log: the run has succeeded.
func RunSucceeded(c *Ctx, ctx context.Context) {
	h := c.success.Load()
	if h == nil {
		return
	}
	h.mu.Lock()
	hooks := h.hooks
	h.hooks = nil
	h.mu.Unlock()
	for _, f := range hooks {
		f(ctx)
	}
}
