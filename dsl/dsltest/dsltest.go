// Package dsltest has in-memory capabilities for testing run bodies and primitives
// without an agent: a journal that replays like the run actor's, a sandbox base to
// embed, and recording fakes of the brokered capabilities.
package dsltest

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Journal is an append-once journal, as the run actor keeps it.
type Journal struct {
	mu      sync.Mutex
	Results map[string]json.RawMessage
	Fails   map[string]*dsl.Failure
	Order   []string // steps in the order they were recorded
}

// NewJournal returns an empty journal.
func NewJournal() *Journal {
	return &Journal{Results: map[string]json.RawMessage{}, Fails: map[string]*dsl.Failure{}}
}

// Begin implements dsl.Journal.
func (j *Journal) Begin(_ context.Context, step string) (bool, json.RawMessage, *dsl.Failure, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if f, ok := j.Fails[step]; ok {
		return true, nil, f, nil
	}
	if r, ok := j.Results[step]; ok {
		return true, r, nil, nil
	}
	return false, nil, nil, nil
}

// End implements dsl.Journal (a step recorded once stays as it was).
func (j *Journal) End(_ context.Context, step string, result json.RawMessage, f *dsl.Failure) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.Results[step]; ok {
		return nil
	}
	if _, ok := j.Fails[step]; ok {
		return nil
	}
	if f != nil {
		j.Fails[step] = f
	} else {
		j.Results[step] = result
	}
	j.Order = append(j.Order, step)
	return nil
}

// Has reports whether step is recorded.
func (j *Journal) Has(step string) bool {
	done, _, _, _ := j.Begin(context.Background(), step)
	return done
}

// Put records a step's result directly (e.g. an event the run actor recorded).
func (j *Journal) Put(step string, v any) {
	b, _ := json.Marshal(v)
	_ = j.End(context.Background(), step, b, nil)
}

// SandboxBase implements dsl.Sandbox with every method failing; embed it and override
// what a test needs.
type SandboxBase struct{}

func notHere(what string) error {
	return &dsl.ExecFailed{ExitCode: -1, Cause: what + " is not implemented by this fake"}
}

func (SandboxBase) Checkout(context.Context, string, string) (string, error) {
	return "", notHere("Checkout")
}
func (SandboxBase) Exec(context.Context, dsl.ExecRequest) (dsl.ExecResult, error) {
	return dsl.ExecResult{ExitCode: -1}, notHere("Exec")
}
func (SandboxBase) ReadFile(_ context.Context, p string) ([]byte, error) {
	return nil, &dsl.ReadFileFailed{Path: p, Message: "no such file"}
}
func (SandboxBase) RunDetached(context.Context, dsl.ExecRequest) (dsl.Process, error) {
	return dsl.Process{}, notHere("RunDetached")
}
func (SandboxBase) WaitForExit(context.Context, dsl.Process) (dsl.ExecResult, error) {
	return dsl.ExecResult{ExitCode: -1}, notHere("WaitForExit")
}
func (SandboxBase) WaitForPort(_ context.Context, _ dsl.Process, port int, timeout time.Duration) error {
	return &dsl.PortNeverOpened{Port: port, TimeoutSec: int64(timeout / time.Second)}
}
func (SandboxBase) ExposePort(_ context.Context, port int) (string, error) {
	return "", &dsl.ExposePortFailed{Port: port, Cause: "not implemented by this fake"}
}
func (SandboxBase) Exists(context.Context, string) (bool, error) { return false, nil }
func (SandboxBase) Changes(context.Context, string) ([]dsl.Change, error) {
	return nil, notHere("Changes")
}

var _ dsl.Sandbox = SandboxBase{}

// Suspender records suspensions; when Cancel is set it is called like the agent ends
// the attempt.
type Suspender struct {
	mu     sync.Mutex
	Calls  []dsl.Suspension
	Cancel context.CancelCauseFunc
}

// Suspend implements dsl.Suspender.
func (s *Suspender) Suspend(_ context.Context, sp dsl.Suspension) error {
	s.mu.Lock()
	s.Calls = append(s.Calls, sp)
	s.mu.Unlock()
	if s.Cancel != nil {
		s.Cancel(context.Canceled)
	}
	return nil
}

// Children runs children in memory: Spawn records them (idempotently, as the edge
// does); tests end them with Finish.
type Children struct {
	mu       sync.Mutex
	Parent   string
	FailFast bool
	Spawns   int
	kids     []dsl.ChildResult
	Inputs   map[string]json.RawMessage
}

// Spawn implements dsl.Children.
func (c *Children) Spawn(_ context.Context, failFast bool, children []dsl.ChildSpec) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Spawns++
	c.FailFast = c.FailFast || failFast
	if c.Inputs == nil {
		c.Inputs = map[string]json.RawMessage{}
	}
	ids := make([]string, 0, len(children))
	for _, ch := range children {
		id := c.Parent + ":" + ch.Key
		ids = append(ids, id)
		if slices.ContainsFunc(c.kids, func(r dsl.ChildResult) bool { return r.Exec == id }) {
			continue
		}
		b, _ := json.Marshal(ch.Inputs)
		c.Inputs[id] = b
		c.kids = append(c.kids, dsl.ChildResult{Key: ch.Key, Exec: id, Run: ch.Run, Status: "queued", LogsURL: "https://edge.test/logs/" + id})
	}
	return ids, nil
}

// Results implements dsl.Children.
func (c *Children) Results(context.Context) ([]dsl.ChildResult, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.kids), nil
}

// Finish ends a child with a status and an output or failure.
func (c *Children) Finish(key, status string, output any, f *dsl.Failure, duration time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.kids {
		if c.kids[i].Key == key {
			c.kids[i].Status, c.kids[i].Failure, c.kids[i].DurationMs = status, f, duration.Milliseconds()
			if output != nil {
				c.kids[i].Output, _ = json.Marshal(output)
			}
		}
	}
}

// Config is a map-backed dsl.ConfigStore.
type Config map[string]string

// Get implements dsl.ConfigStore.
func (c Config) Get(_ context.Context, keys []string) (map[string]string, error) {
	out := map[string]string{}
	for _, k := range keys {
		if v, ok := c[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}
