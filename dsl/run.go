// Package dsl is how a run is written: a Spec, typed inputs and outputs, and a body
// made of durable steps over capabilities (sandbox, secrets, journal) that the agent
// provides. Failures are typed errors of one closed set, rendered for check-runs by
// Markdown.
//
// Layering: capabilities (interfaces in ctx.go) → primitives (LoadSecrets, …) →
// recipes (CommandRun) → runs (package runs). The package has no platform or host
// dependency and builds for GOOS=js GOARCH=wasm.
package dsl

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// Pools of sandboxes a run can ask for.
const (
	PoolLean    = "lean"
	PoolBrowser = "browser"
)

// Spec describes a run: what the registry, the edge and the actors need without
// running it.
type Spec struct {
	Name        string // kebab-case, unique in the registry
	Version     string // semver
	Description string
	Pool        string // PoolLean or PoolBrowser; "" means lean
	MaxDuration time.Duration
	Schedules   []Schedule
	Triggers    []Trigger // webhook mode (triggers.go)
	// Needs are what the run may ask the edge for beyond its own logs, artifacts and
	// cache (the edge checks each request against them).
	Needs Needs
	// Writeback, when set, proposes the run's changes as a pull request (writeback.go).
	Writeback *Writeback
	// Cooldown, when set, caps how often the run starts per repository and scope.
	Cooldown *Cooldown
}

// Needs are a run's declared needs, checked by the edge's agent API.
type Needs struct {
	// Config are the CONFIG_KV namespaces the run reads: a key is readable when it
	// starts with "<namespace>." (nil means the run's own name only).
	Config []string
	// PullRequests lets the run open draft pull requests on its repository.
	PullRequests bool
	// Secrets are whole CONFIG_KV keys (prefix included) the run may load with
	// LoadSecrets whatever its inputs say. Beside them, an execution may load only the
	// keys its dispatch declared: inputs.secrets, each under inputs.secretPrefix.
	Secrets []string
	// Model lets the run call models through the edge's gateway.
	Model bool
	// Comments lets the run keep its comment on its pull requests.
	Comments bool
	// CI lets the run read workflow runs.
	CI bool
	// ReposKey names a CONFIG_KV key (in the run's namespaces) listing, comma- or
	// space-separated, repositories beyond its own that the run may read and open pull
	// requests on (scheduled runs that scan several repositories).
	ReposKey string
}

// ConfigNamespaces are Needs.Config, or the run's name when none are declared.
func (s Spec) ConfigNamespaces() []string {
	if len(s.Needs.Config) > 0 {
		return s.Needs.Config
	}
	return []string{s.Name}
}

// Schedule fires the run from a cron trigger. Inputs give a scope; enumerating work
// belongs in the run's first step.
type Schedule struct {
	Cron           string
	IdempotencyKey func(firedAt time.Time) string
	Gate           func(firedAt time.Time) bool // nil = always
	Inputs         func(firedAt time.Time) any
}

// Run is a registered run program.
type Run interface {
	Spec() Spec
	// DecodeInputs validates inputs at the boundary (unknown fields rejected, wrong
	// types, missing required fields, then the input type's Validate() error if it has
	// one) and returns them normalized as JSON (defaults applied). Errors are *FieldError.
	DecodeInputs(raw json.RawMessage) (json.RawMessage, error)
	// Execute runs the program for one attempt. inputs are normally DecodeInputs'
	// output; they are decoded again, strictly. The output is the body's result as JSON;
	// a body that fails with a non-zero result hands back both, so what it found (its
	// findings, which become check-run annotations) survives a red run.
	Execute(c *Ctx, inputs json.RawMessage) (json.RawMessage, error)
}

var kebabChars, prereleaseChars = pattern.NewSet("a-z0-9-"), pattern.NewSet("0-9A-Za-z.-")

// isKebab is the shape ^[a-z0-9]+(?:-[a-z0-9]+)*$.
func isKebab(s string) bool {
	return kebabChars.Run(s, 1, len(s)) && s[0] != '-' && s[len(s)-1] != '-' && !strings.Contains(s, "--")
}

// isSemver is the shape ^\d+\.\d+\.\d+(?:-[0-9A-Za-z-.]+)?$.
func isSemver(s string) bool {
	core, pre, hasPre := strings.Cut(s, "-")
	if hasPre && !prereleaseChars.Run(pre, 1, len(pre)) {
		return false
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if !pattern.Digits.Run(p, 1, len(p)) {
			return false
		}
	}
	return true
}

// Validate reports the first problem with the spec.
func (s Spec) Validate() error {
	switch {
	case !isKebab(s.Name):
		return fmt.Errorf("run name %q is not kebab-case", s.Name)
	case !isSemver(s.Version):
		return fmt.Errorf("run %s: version %q is not semver", s.Name, s.Version)
	case s.MaxDuration <= 0:
		return fmt.Errorf("run %s: MaxDuration must be > 0, got %s", s.Name, s.MaxDuration)
	case s.Cooldown != nil && (s.Cooldown.Window <= 0 || s.Cooldown.Scope == nil):
		return fmt.Errorf("run %s: cooldown needs a window > 0 and a scope", s.Name)
	case s.Pool != "" && s.Pool != PoolLean && s.Pool != PoolBrowser:
		return fmt.Errorf("run %s: pool %q is neither %q nor %q", s.Name, s.Pool, PoolLean, PoolBrowser)
	}
	if err := validateTriggers(s); err != nil {
		return err
	}
	if s.Writeback != nil {
		if err := s.Writeback.validate(s.Name); err != nil {
			return err
		}
	}
	for i, sc := range s.Schedules {
		switch {
		case len(strings.Fields(sc.Cron)) != 5:
			return fmt.Errorf("run %s: schedule %d: cron %q does not have 5 fields", s.Name, i, sc.Cron)
		case sc.IdempotencyKey == nil:
			return fmt.Errorf("run %s: schedule %d (%s) has no IdempotencyKey", s.Name, i, sc.Cron)
		case sc.Inputs == nil:
			return fmt.Errorf("run %s: schedule %d (%s) has no Inputs", s.Name, i, sc.Cron)
		}
	}
	return nil
}

// PoolName is the pool the run's sandboxes come from (Pool, or lean when empty).
func (s Spec) PoolName() string {
	if s.Pool == "" {
		return PoolLean
	}
	return s.Pool
}

// Define makes a Run from a spec and a typed body. It panics on an invalid spec, so a
// bad run fails at init, not at dispatch.
//
// Inputs of type I are decoded strictly (see DecodeInputs). A struct field is required
// unless its json tag has omitempty or omitzero. If *I has a method Default(), it is
// called after decoding to fill defaults; if it has Validate() error, that runs last
// and should return a *FieldError naming the field.
func Define[I any, O any](spec Spec, body func(c *Ctx, in I) (O, error)) Run {
	if err := spec.Validate(); err != nil {
		panic("dsl.Define: " + err.Error())
	}
	if body == nil {
		panic("dsl.Define: run " + spec.Name + " has no body")
	}
	return &typedRun[I, O]{spec: spec, body: body}
}

type typedRun[I any, O any] struct {
	spec Spec
	body func(c *Ctx, in I) (O, error)
}

func (r *typedRun[I, O]) Spec() Spec { return r.spec }

func (r *typedRun[I, O]) DecodeInputs(raw json.RawMessage) (json.RawMessage, error) {
	in, err := decodeInputs[I](raw)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, &FieldError{Message: "inputs do not encode as JSON: " + err.Error()}
	}
	return b, nil
}

func (r *typedRun[I, O]) Execute(c *Ctx, raw json.RawMessage) (json.RawMessage, error) {
	in, err := decodeInputs[I](raw)
	if err != nil {
		return nil, &StepFailed{Step: "inputs", Cause: "invalid inputs: " + err.Error()}
	}
	out, err := r.body(c, in)
	if err != nil {
		if reflect.ValueOf(&out).Elem().IsZero() {
			return nil, err
		}
		if b, merr := json.Marshal(out); merr == nil {
			return b, err
		}
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, &StepFailed{Step: "output", Cause: "output does not encode as JSON: " + err.Error()}
	}
	return b, nil
}

// Registry is the runs that exist, by name.
type Registry map[string]Run

// NewRegistry indexes runs by name. It panics on a duplicate name.
func NewRegistry(runs ...Run) Registry {
	r := make(Registry, len(runs))
	for _, run := range runs {
		name := run.Spec().Name
		if _, dup := r[name]; dup {
			panic("dsl.NewRegistry: run " + name + " registered twice")
		}
		r[name] = run
	}
	return r
}

// Names returns the run names, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
