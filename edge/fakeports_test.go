package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Ports in memory for the edge's own tests; the local stack tests use the real ones.

type memKV struct {
	mu sync.Mutex
	m  map[string]string
}

func newKV() *memKV { return &memKV{m: map[string]string{}} }

func (k *memKV) Get(_ context.Context, key string) (string, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	return v, ok, nil
}

func (k *memKV) Put(_ context.Context, key, value string, _ time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = value
	return nil
}

func (k *memKV) get(key string) string {
	v, _, _ := k.Get(context.Background(), key)
	return v
}

type memMeta struct {
	mu    sync.Mutex
	execs map[string]edge.Execution
	costs map[string]edge.Cost
}

func newMeta() *memMeta { return &memMeta{execs: map[string]edge.Execution{}} }

func (m *memMeta) CreateExecution(_ context.Context, e edge.Execution) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.execs[e.ID]; ok {
		return false, nil
	}
	m.execs[e.ID] = e
	return true, nil
}

func (m *memMeta) UpdateExecution(_ context.Context, e edge.Execution) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.execs[e.ID]
	if !ok {
		return fmt.Errorf("execution %s: %w", e.ID, edge.ErrNotFound)
	}
	if e.Status != "" {
		cur.Status = e.Status
	}
	if e.CheckRunID != 0 {
		cur.CheckRunID = e.CheckRunID
	}
	if !e.CompletedAt.IsZero() {
		cur.CompletedAt = e.CompletedAt
	}
	if e.Summary != nil {
		cur.Summary = e.Summary
	}
	m.execs[e.ID] = cur
	return nil
}

func (m *memMeta) Execution(_ context.Context, id string) (edge.Execution, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.execs[id]
	if !ok {
		return e, fmt.Errorf("execution %s: %w", id, edge.ErrNotFound)
	}
	return e, nil
}

func (m *memMeta) PutStep(context.Context, edge.StepRow) error { return nil }
func (m *memMeta) ReopenExecution(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.execs[id]
	if !ok {
		return fmt.Errorf("execution %s: %w", id, edge.ErrNotFound)
	}
	e.Status, e.CompletedAt, e.Summary = "queued", time.Time{}, nil
	m.execs[id] = e
	return nil
}

// ListExecutions filters as the SQL store does, newest first.
func (m *memMeta) ListExecutions(_ context.Context, f edge.ExecutionFilter) ([]edge.ExecutionListing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []edge.ExecutionListing
	for _, e := range m.execs {
		if (f.Run == "" || e.Run == f.Run) && (f.Repo == "" || e.Repo == f.Repo) && (f.SHA == "" || e.SHA == f.SHA) &&
			(f.Status == "" || e.Status == f.Status) && (f.Parent == "" || e.Parent == f.Parent) {
			out = append(out, edge.ExecutionListing{Execution: e})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.After(out[j].StartedAt)
		}
		return out[i].ID > out[j].ID
	})
	if f.Limit > 0 && len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}
func (m *memMeta) PutCost(_ context.Context, exec string, c edge.Cost) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.costs == nil {
		m.costs = map[string]edge.Cost{}
	}
	m.costs[exec] = c
	return nil
}
func (m *memMeta) CostTotals(context.Context, edge.CostFilter) ([]edge.CostTotal, error) {
	return nil, nil
}
func (m *memMeta) Steps(context.Context, string) ([]edge.StepRow, error) { return nil, nil }

func (m *memMeta) params(id string) edge.Params {
	e, err := m.Execution(context.Background(), id)
	if err != nil {
		panic(err)
	}
	var p edge.Params
	_ = json.Unmarshal(e.Input, &p)
	return p
}

// fakeActors answers RunStart idempotently per execution id, and RunEvent as the run
// actor does; failStart makes starts of one execution id fail.
type fakeActors struct {
	mu        sync.Mutex
	started   map[string]int // exec → RunStarts received
	status    map[string]actors.Status
	events    map[string]bool // exec + "/" + type
	failStart map[string]bool
}

func newActors() *fakeActors {
	return &fakeActors{started: map[string]int{}, status: map[string]actors.Status{}, events: map[string]bool{}, failStart: map[string]bool{}}
}

func (a *fakeActors) Send(actors.Addr, actors.Message) error { return nil }

func (a *fakeActors) Call(_ context.Context, _ actors.Addr, m actors.Message) (actors.Message, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch m := m.(type) {
	case actors.RunStart:
		if a.failStart[m.Exec] {
			return nil, fmt.Errorf("actor host unavailable")
		}
		a.started[m.Exec]++
		created := a.started[m.Exec] == 1
		if created {
			a.status[m.Exec] = actors.StatusQueued
		}
		return actors.RunStatus{Exec: m.Exec, Status: a.status[m.Exec], Created: created}, nil
	case actors.RunEvent:
		st := a.status[m.Exec]
		ack := actors.RunEventAck{Exec: m.Exec, Status: st}
		switch {
		case st == "" || st.Terminal():
		case a.events[m.Exec+"/"+m.Kind]:
			ack.Duplicate = true
		default:
			a.events[m.Exec+"/"+m.Kind] = true
			ack.Delivered = true
		}
		return ack, nil
	}
	return nil, fmt.Errorf("fake actors: unexpected %T", m)
}

func (a *fakeActors) starts(exec string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.started[exec]
}

func (a *fakeActors) setStatus(exec string, st actors.Status) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status[exec] = st
}
