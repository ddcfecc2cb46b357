package dsl

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// envName is what a secret key or an env variable name must look like.
var envNameStart, envNameChars = pattern.NewSet("A-Za-z_"), pattern.NewSet("A-Za-z0-9_")

// IsEnvName reports whether s can be an environment variable name.
func IsEnvName(s string) bool {
	return s != "" && envNameStart.Has(s[0]) && envNameChars.All(s)
}

// LoadSecrets returns the values of keys (looked up as prefix+key) keyed by key. Call
// it inline in the body, never inside a Step: step results are stored, secrets must not
// be. With required, a missing key fails with *SecretsMissing; otherwise missing keys
// are left out.
func LoadSecrets(c *Ctx, keys []string, prefix string, required bool) (map[string]string, error) {
	if len(keys) == 0 {
		return map[string]string{}, nil
	}
	if c.Secrets == nil {
		if required {
			return nil, &SecretsMissing{Keys: keys}
		}
		return map[string]string{}, nil
	}
	vals, err := c.Secrets.Load(c, keys, prefix, required)
	if err != nil {
		var t TypedError
		if errors.As(err, &t) {
			return nil, err
		}
		return nil, fmt.Errorf("load secrets: %w", err) // recorded as StepFailed; the chain stays for the agent
	}
	if vals == nil {
		vals = map[string]string{}
	}
	return vals, nil
}

// Checkout clones repo at sha in the sandbox as the durable step name and returns the
// directory.
func Checkout(c *Ctx, name, repo, sha string, opts ...StepOption) (string, error) {
	if c.Sandbox == nil {
		return "", &CheckoutFailed{Repo: repo, SHA: sha, Cause: "no sandbox"}
	}
	res, err := Step(c, name, func(ctx context.Context) (checkoutResult, error) {
		dir, err := c.Sandbox.Checkout(ctx, repo, sha)
		return checkoutResult{Dir: dir}, err
	}, opts...)
	return res.Dir, err
}

type checkoutResult struct {
	Dir string `json:"dir"`
}

// Command is the work of a command run: a repository at a commit, secrets, and one
// shell command.
type Command struct {
	Repo, SHA    string
	Command      string
	Env          map[string]string // non-secret; overrides secrets of the same name
	Secrets      []string
	SecretPrefix string
	Timeout      time.Duration
	// Install installs the checkout's dependencies first (InstallCached, step install).
	Install bool
	// ExecStep names the command's step (default "exec"; StepSuffix is appended).
	ExecStep string
	// StepSuffix tells apart the steps of several command runs in one run body:
	// "" gives "checkout" and "exec", "shard-2" gives "checkout-shard-2" and "exec-shard-2".
	StepSuffix string
}

// CommandRun is the recipe of every run that checks out a repository and runs a
// command in it (offload-test, matrix shards, fixtures): step checkout → [step install]
// → secrets loaded inline → step exec (env = the install's, then secrets, then Env on
// top; the command's timeout).
// A non-zero exit is a normal result; the caller decides whether it fails the run.
//
// The exec step checks the directory out again if it is missing: a new attempt on a
// fresh sandbox replays the checkout step from the journal without the files.
func CommandRun(c *Ctx, cmd Command) (ExecResult, error) {
	if c.Sandbox == nil {
		return ExecResult{}, &ExecFailed{ExitCode: -1, Cause: "no sandbox"}
	}
	execStep := "exec"
	if cmd.ExecStep != "" {
		execStep = cmd.ExecStep
	}
	if cmd.StepSuffix != "" {
		execStep += "-" + cmd.StepSuffix
	}
	ws, err := NewWorkspace(c, WorkspaceOptions{Repo: cmd.Repo, SHA: cmd.SHA, Install: cmd.Install, StepSuffix: cmd.StepSuffix})
	if err != nil {
		return ExecResult{}, err
	}
	secrets, err := LoadSecrets(c, cmd.Secrets, cmd.SecretPrefix, true)
	if err != nil {
		return ExecResult{}, err
	}
	env := make(map[string]string, len(ws.Env)+len(secrets)+len(cmd.Env))
	maps.Copy(env, ws.Env)
	maps.Copy(env, secrets)
	maps.Copy(env, cmd.Env)

	stepTimeout := time.Duration(0) // no step bound without a command bound
	if cmd.Timeout > 0 {
		stepTimeout = cmd.Timeout + 2*time.Minute // the command's own timeout fires first
	}
	return Step(c, execStep, func(ctx context.Context) (ExecResult, error) {
		dir, err := c.Sandbox.Checkout(ctx, cmd.Repo, cmd.SHA) // idempotent; fast when present
		if err != nil {
			return ExecResult{}, err
		}
		return c.Sandbox.Exec(ctx, ExecRequest{Dir: dir, Command: cmd.Command, Env: env, Timeout: cmd.Timeout})
	}, Timeout(stepTimeout))
}

// CheckEnv validates the variable names of an env map (for input types' Validate); the
// error names the first bad key in sorted order.
func CheckEnv(field string, env map[string]string) *FieldError {
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if !IsEnvName(k) {
			return &FieldError{Field: field + "." + k, Message: fmt.Sprintf("%q is not a valid environment variable name", k)}
		}
	}
	return nil
}
