package dsl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"path"
	"strings"
	"time"
)

// Tool is a package manager InstallCached knows: found by its lockfile, installed by
// Command in the checkout, cached as Paths.
type Tool struct {
	Name     string
	Lockfile string
	Command  string
	// Version prints, one per line, the versions the installed files depend on (the
	// runtime whose ABI native modules are built for, and the package manager, whose
	// layout differs between majors): they are part of the cache key.
	Version string
	// paths and env give the cached directories and the environment the install and
	// every later command need, given the checkout dir and a directory of its own for
	// the tool's files (outside the checkout, so it never shows in Changes).
	paths func(dir, home string) []string
	env   func(home string) map[string]string
}

// Tools are the package managers in detection order: the first whose lockfile is in
// the checkout wins (contract §5.3, plus Go modules).
var Tools = []Tool{
	{Name: "pnpm", Lockfile: "pnpm-lock.yaml", Command: "pnpm install --frozen-lockfile", Version: "node --version && pnpm --version",
		paths: func(dir, _ string) []string { return []string{path.Join(dir, "node_modules")} }},
	{Name: "npm", Lockfile: "package-lock.json", Command: "npm ci --no-audit --no-fund", Version: "node --version && npm --version",
		paths: func(dir, _ string) []string { return []string{path.Join(dir, "node_modules")} }},
	{Name: "yarn", Lockfile: "yarn.lock", Command: "yarn install --frozen-lockfile", Version: "node --version && yarn --version",
		paths: func(dir, _ string) []string { return []string{path.Join(dir, "node_modules")} }},
	{Name: "cargo", Lockfile: "Cargo.lock", Command: "cargo fetch --locked", Version: "cargo --version",
		paths: func(_, home string) []string {
			return []string{path.Join(home, "cargo", "registry", "cache"), path.Join(home, "cargo", "registry", "index"), path.Join(home, "cargo", "git", "db")}
		},
		env: func(home string) map[string]string { return map[string]string{"CARGO_HOME": path.Join(home, "cargo")} }},
	{Name: "uv", Lockfile: "uv.lock", Command: "uv sync --frozen", Version: "uv --version && python3 --version",
		paths: func(dir, _ string) []string { return []string{path.Join(dir, ".venv")} }},
	{Name: "go", Lockfile: "go.sum", Command: "go mod download", Version: "go env GOVERSION",
		paths: func(_, home string) []string { return []string{path.Join(home, "gomod")} },
		env: func(home string) map[string]string {
			// -modcacherw: module files stay writable, so a workspace can be removed.
			return map[string]string{"GOMODCACHE": path.Join(home, "gomod"), "GOFLAGS": "-modcacherw"}
		}},
}

// CacheKey is the key of a tool's dependencies: <tool>-<version>-<sha256 of the
// lockfile>, the version reduced as ToolchainKey's (another node's node_modules may hold
// native modules built for another ABI: never restored across versions).
func CacheKey(tool, version string, lockfile []byte) string {
	sum := sha256.Sum256(lockfile)
	return tool + "-" + keySafe(version) + "-" + hex.EncodeToString(sum[:])
}

// toolVersion runs t's version probe in dir: its lines joined by spaces, or "unknown"
// when the tool does not answer (the install then fails on its own, and says why).
func toolVersion(ctx context.Context, c *Ctx, t Tool, dir string) string {
	res, err := c.Sandbox.Exec(ctx, ExecRequest{Dir: dir, Command: t.Version, Timeout: time.Minute, Quiet: true})
	v := strings.Join(strings.Fields(res.StdoutTail), " ")
	if err != nil || res.ExitCode != 0 || v == "" {
		return "unknown"
	}
	return v
}

// ToolsDir is where InstallCached keeps a checkout's tool files (Go's module cache,
// Cargo's registry): beside the checkout, never inside it.
func ToolsDir(dir string) string {
	return path.Join(path.Dir(dir), ".flare-tools", path.Base(dir))
}

// Install is what InstallCached did.
type Install struct {
	Tool    string            `json:"tool,omitempty"` // "" when no lockfile was found
	Key     string            `json:"key,omitempty"`
	Hit     bool              `json:"hit,omitempty"` // restored from the cache; the install did not run
	Env     map[string]string `json:"env,omitempty"` // for every later command
	Paths   []string          `json:"paths,omitempty"`
	Restore CacheResult       `json:"restore"`
	Save    *CacheResult      `json:"save,omitempty"`
	Exec    *ExecResult       `json:"exec,omitempty"`
}

// RestoreOr restores paths from the cache under key, or runs onMiss and saves them
// (contract cache.restoreOr). A failed save is logged, not fatal: the work is done.
// Failures of the cache itself are *CacheError.
func RestoreOr(ctx context.Context, c *Ctx, key string, paths []string, onMiss func(context.Context) error) (restored CacheResult, saved *CacheResult, err error) {
	if c.Cache == nil {
		return CacheResult{Key: key}, nil, &CacheError{Phase: "restore", Key: key, Cause: "this platform has no cache"}
	}
	restored, err = c.Cache.Restore(ctx, key, paths)
	if err != nil {
		return restored, nil, cacheErr("restore", key, err)
	}
	if restored.Hit {
		c.logger().Info("cache hit", "key", key, "bytes", restored.Bytes, "files", restored.Files, "durationMs", restored.DurationMs)
		return restored, nil, nil
	}
	if err := onMiss(ctx); err != nil {
		return restored, nil, err
	}
	s, err := c.Cache.Save(ctx, key, paths)
	if err != nil {
		if ctx.Err() != nil {
			return restored, nil, err
		}
		c.logger().Warn("cache save failed; the next run installs again", "key", key, "err", err)
		return restored, nil, nil
	}
	c.logger().Info("cache saved", "key", key, "bytes", s.Bytes, "files", s.Files, "readOnly", s.ReadOnly, "durationMs", s.DurationMs)
	return restored, &s, nil
}

func cacheErr(phase, key string, err error) error {
	var t TypedError
	if errors.As(err, &t) {
		return err
	}
	return &CacheError{Phase: phase, Key: key, Cause: err.Error()}
}

// DetectTool finds the package manager of the checkout at dir by its lockfile and reads
// the lockfile; found is false when there is none.
func DetectTool(ctx context.Context, sb Sandbox, dir string) (t Tool, lockfile []byte, found bool, err error) {
	for _, t := range Tools {
		p := path.Join(dir, t.Lockfile)
		ok, err := sb.Exists(ctx, p)
		if err != nil {
			return Tool{}, nil, false, err
		}
		if !ok {
			continue
		}
		b, err := sb.ReadFile(ctx, p)
		if err != nil {
			return Tool{}, nil, false, err
		}
		return t, b, true, nil
	}
	return Tool{}, nil, false, nil
}

// InstallCached installs the dependencies of the checkout at dir with the package
// manager its lockfile names (Tools), restoring them from the cache when an earlier
// execution of the repository saved the same lockfile's, and saving them otherwise.
// No lockfile: nothing to do. The install is the durable step name; its Env must be
// given to every later command (Go and Cargo keep their files beside the checkout).
//
// A new attempt on a fresh sandbox replays the step from the journal without the files,
// so the files are checked and restored (or installed) again when missing.
func InstallCached(c *Ctx, name, dir string) (Install, error) {
	return installCached(c, name, dir, false)
}

// installCached is InstallCached; with stores, an install that runs first gets the
// package manager's download store restored (NewWorkspace: warmStores), so an install
// for a new lockfile downloads only what changed.
func installCached(c *Ctx, name, dir string, stores bool) (Install, error) {
	if c.Sandbox == nil {
		return Install{}, &ExecFailed{ExitCode: -1, Cause: "no sandbox"}
	}
	do := func(ctx context.Context) (Install, error) {
		t, lock, found, err := DetectTool(ctx, c.Sandbox, dir)
		if err != nil {
			return Install{}, err
		}
		if !found {
			c.logger().Info("no lockfile: nothing to install", "dir", dir)
			return Install{}, nil
		}
		home := ToolsDir(dir)
		in := Install{Tool: t.Name, Key: CacheKey(t.Name, toolVersion(ctx, c, t, dir), lock), Paths: t.paths(dir, home), Env: map[string]string{}}
		if t.env != nil {
			maps.Copy(in.Env, t.env(home))
		}
		in.Restore, in.Save, err = RestoreOr(ctx, c, in.Key, in.Paths, func(ctx context.Context) error {
			if stores {
				warmStores(c, dir, in.Env, in.Paths)
			}
			res, err := c.Sandbox.Exec(ctx, ExecRequest{Dir: dir, Command: t.Command, Env: in.Env, Timeout: 20 * time.Minute})
			in.Exec = &res
			if err != nil {
				return err
			}
			if res.ExitCode != 0 {
				return &CommandFailed{ExitCode: res.ExitCode, StderrTail: res.StderrTail}
			}
			return nil
		})
		in.Hit = in.Restore.Hit
		return in, err
	}
	ran := false
	in, err := Step(c, name, func(ctx context.Context) (Install, error) { ran = true; return do(ctx) }, Timeout(30*time.Minute))
	if err != nil || in.Tool == "" || ran {
		return in, err
	}
	// Replayed from the journal: the files are here unless this is a fresh sandbox.
	for _, p := range in.Paths {
		ok, err := c.Sandbox.Exists(c, p)
		if err != nil || ok {
			return in, err
		}
	}
	c.logger().Info("installed files missing after replay; installing again", "step", name)
	again, err := do(c)
	if err != nil {
		return in, err
	}
	again.Env = in.Env
	return again, nil
}

// Workspace is a checkout, with its dependencies installed when asked.
type Workspace struct {
	Dir     string            `json:"dir"`
	Env     map[string]string `json:"env,omitempty"`
	Install *Install          `json:"install,omitempty"`
	// Toolchains are the toolchain caches restored for it (WarmCaches).
	Toolchains []ToolchainCache `json:"toolchains,omitempty"`
}

// WorkspaceOptions says what Workspace prepares.
type WorkspaceOptions struct {
	Repo, SHA string
	Install   bool
	// StepSuffix tells apart the steps of several workspaces in one run:
	// "" gives "checkout" and "install", "shard-2" gives "checkout-shard-2", ….
	StepSuffix string
}

// NewWorkspace is the workspace primitive: step checkout, then (with Install) step
// install through InstallCached, then the toolchain caches (WarmCaches, inline).
func NewWorkspace(c *Ctx, o WorkspaceOptions) (Workspace, error) {
	suffix := ""
	if o.StepSuffix != "" {
		suffix = "-" + o.StepSuffix
	}
	defer startPrefetch(c)()
	dir, err := Checkout(c, "checkout"+suffix, o.Repo, o.SHA, Retries(1))
	if err != nil {
		return Workspace{}, err
	}
	w := Workspace{Dir: dir, Env: map[string]string{}}
	if c.Cache == nil && !o.Install {
		return w, nil
	}
	// The files must be there even when the checkout step was replayed.
	if _, err := c.Sandbox.Checkout(c, o.Repo, o.SHA); err != nil {
		return w, err
	}
	if o.Install {
		in, err := installCached(c, "install"+suffix, dir, true)
		if err != nil {
			return w, err
		}
		w.Install = &in
		maps.Copy(w.Env, in.Env)
	}
	w.Toolchains = WarmCaches(c, dir, w.Env, w.Install)
	return w, nil
}
