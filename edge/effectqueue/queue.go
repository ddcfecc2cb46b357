// Package effectqueue performs the actors' non-actor effects (agent starts and stops,
// projections to the executions and steps tables, check-runs) off the actor hosts'
// hot paths, for both platforms: the native host hands effects over on its writer,
// the Durable Object host inside a delivery, and neither may wait on a database, a
// container or GitHub.
//
// Guarantees:
//   - Order per execution: the effects of one execution are performed one at a time,
//     in the order they were handed over. Hosts hand them over in the order their
//     state transitions were persisted, and projections are last-write-wins, so a
//     late "running" never overwrites "success".
//   - A deadline per effect (Options.Limit): a shared runtime cannot rule out an await
//     that never settles (a promise that belonged to a finished request).
//   - Bounded memory (Options.MaxQueued): Handle never blocks. When the queue is full,
//     a Progress or StepProgress replaces the queued one of the same execution (or
//     step) that it supersedes; any other effect is dropped and logged. Effects are not
//     durable anyway: an actor's Recover emits them again, and the protocols heal a lost
//     agent start or stop (a silent agent is restarted after its boot grace).
//   - Close stops accepting, performs what is queued until its context ends, then
//     cancels what is in flight and waits for it.
//
// New starts no goroutine: a worker is started when an effect is queued and fewer
// than Options.Workers are running, and it exits when nothing is left. Workers
// take executions in turn, one effect each, so a busy execution does not starve the
// others. The queue builds for js/wasm, where goroutines are cooperative: a worker
// runs when the goroutine that queued the effect waits on JavaScript.
package effectqueue

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// Perform carries out one effect; ctx ends at the effect's deadline or when Close
// gives up waiting. It must return once ctx ends. The edge's (*edge.Server).Perform
// is one.
type Perform func(ctx context.Context, from actors.Addr, e actors.Effect)

// Options tune a Queue; zero fields get defaults.
type Options struct {
	Workers   int           // effects performed at once, each of a different execution (default 4)
	Limit     time.Duration // how long one effect may take (default 2 minutes)
	MaxQueued int           // effects waiting to be performed, all executions together (default 4096)
	Logger    *slog.Logger  // default slog.Default()
}

// Queue is the effect queue. It is safe for concurrent use.
type Queue struct {
	perform Perform
	opt     Options
	log     *slog.Logger
	ctx     context.Context // parent of every effect's context; cancelled by Close
	cancel  context.CancelFunc
	wg      sync.WaitGroup // running workers
	dropped atomic.Int64

	mu      sync.Mutex
	lanes   map[string]*lane // executions with queued or running effects
	ready   []*lane          // lanes with queued effects and no worker, in turn
	queued  int
	workers int
	closed  bool
}

// lane is one execution's effects.
type lane struct {
	key  string
	jobs []job
	busy bool // a worker is performing one of its effects; it is then not in ready
}

type job struct {
	from actors.Addr
	e    actors.Effect
}

// New returns a queue that performs effects with perform. It starts nothing.
func New(perform Perform, opt Options) *Queue {
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.Limit <= 0 {
		opt.Limit = 2 * time.Minute
	}
	if opt.MaxQueued <= 0 {
		opt.MaxQueued = 4096
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Queue{perform: perform, opt: opt, log: opt.Logger, ctx: ctx, cancel: cancel, lanes: map[string]*lane{}}
}

// Handle queues e behind the earlier effects of its execution and returns at once.
// It implements the hosts' effect handlers (actors/host.EffectHandler and
// edge/cloudflare.Effects).
func (q *Queue) Handle(from actors.Addr, e actors.Effect) {
	key := laneKey(from, e)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.drop(from, e, "queue closed")
		return
	}
	l := q.lanes[key]
	if l == nil {
		l = &lane{key: key}
		q.lanes[key] = l
	}
	wasEmpty := len(l.jobs) == 0
	if l.supersede(e, newerPosition) {
		// A queued run's newer position makes the waiting projection of its older
		// one pointless: one projection (its reads and two fsynced writes on the
		// local stack's one writer) instead of one per report. Other progress is
		// only coalesced when the queue is full (below): a skipped leased or running
		// projection would lose the start of a sandbox spell (edge/cost.go).
		q.queued--
	} else if q.queued >= q.opt.MaxQueued {
		if !l.supersede(e, supersedes) {
			if wasEmpty && !l.busy {
				delete(q.lanes, key)
			}
			q.drop(from, e, "queue full")
			return
		}
		q.queued--
	}
	l.jobs = append(l.jobs, job{from, e})
	q.queued++
	if wasEmpty && !l.busy {
		q.ready = append(q.ready, l)
	}
	if len(q.ready) > 0 && q.workers < q.opt.Workers {
		q.workers++
		q.wg.Add(1)
		go q.work()
	}
}

// drop counts and logs an effect that will not be performed. q.mu is held.
func (q *Queue) drop(from actors.Addr, e actors.Effect, why string) {
	q.dropped.Add(1)
	q.log.Error("effect dropped: "+why, "from", from.String(), "effect", fmt.Sprintf("%T", e), "queued", q.queued)
}

// supersede removes the queued effect that e makes pointless by the rule by, if there
// is one (supersedes: an earlier Progress of the same execution, or StepProgress of
// the same step; both are projections where the last write wins). The effects that
// stay keep their order.
func (l *lane) supersede(e actors.Effect, by func(newer, older actors.Effect) bool) bool {
	for i, j := range l.jobs {
		if by(e, j.e) {
			l.jobs = append(l.jobs[:i], l.jobs[i+1:]...)
			return true
		}
	}
	return false
}

// isPosition reports a Progress of a run waiting in the admission queue: what it
// projects is its status (queued) and its position text, both last-write-wins.
func isPosition(e actors.Effect) bool {
	p, ok := e.(actors.Progress)
	return ok && p.Status == actors.StatusQueued
}

// newerPosition: both are a queued run's position reports, of the same execution.
func newerPosition(newer, older actors.Effect) bool {
	return isPosition(newer) && isPosition(older) && newer.(actors.Progress).Exec == older.(actors.Progress).Exec
}

func supersedes(newer, older actors.Effect) bool {
	switch n := newer.(type) {
	case actors.Progress:
		o, ok := older.(actors.Progress)
		return ok && o.Exec == n.Exec
	case actors.StepProgress:
		o, ok := older.(actors.StepProgress)
		return ok && o.Exec == n.Exec && o.Step == n.Step
	}
	return false
}

// work performs one effect of the next lane in turn, until no lane is ready.
func (q *Queue) work() {
	defer q.wg.Done()
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) > 0 {
		l := q.ready[0]
		q.ready[0] = nil
		q.ready = q.ready[1:]
		j := l.jobs[0]
		l.jobs[0] = job{}
		l.jobs = l.jobs[1:]
		q.queued--
		l.busy = true
		q.mu.Unlock()
		q.run(j)
		q.mu.Lock()
		l.busy = false
		if len(l.jobs) > 0 {
			q.ready = append(q.ready, l)
		} else {
			delete(q.lanes, l.key)
		}
	}
	q.workers--
}

// run performs one effect under its deadline, and survives its panic.
func (q *Queue) run(j job) {
	ctx, cancel := context.WithTimeout(q.ctx, q.opt.Limit)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			q.log.Error("panic in effect", "from", j.from.String(), "effect", fmt.Sprintf("%T", j.e), "panic", v)
		}
	}()
	q.perform(ctx, j.from, j.e)
	if ctx.Err() != nil {
		q.log.Warn("effect ended by its deadline", "from", j.from.String(), "effect", fmt.Sprintf("%T", j.e), "err", ctx.Err())
	}
}

// Close stops accepting effects (later ones are dropped) and performs those queued
// until ctx ends; it then drops what is still queued, cancels the effects in flight
// and waits for them to return. It reports how many effects it dropped. Close may be
// called more than once.
func (q *Queue) Close(ctx context.Context) error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	done := make(chan struct{})
	go func() {
		q.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		q.mu.Lock()
		n := q.queued
		q.dropped.Add(int64(n))
		for k, l := range q.lanes {
			l.jobs = nil // a busy lane's worker then finds nothing more to do
			if !l.busy {
				delete(q.lanes, k)
			}
		}
		q.ready, q.queued = nil, 0
		q.mu.Unlock()
		q.cancel()
		<-done
		err = fmt.Errorf("effect queue: closed with %d effects not performed and those in flight cancelled: %w", n, ctx.Err())
	}
	q.cancel()
	return err
}

// Dropped counts the effects that were not performed: refused when full or closed,
// or abandoned by Close.
func (q *Queue) Dropped() int64 { return q.dropped.Load() }

// laneKey is the execution an effect is about, or its sender's address.
func laneKey(from actors.Addr, e actors.Effect) string {
	switch e := e.(type) {
	case actors.StartAgent:
		return e.Exec
	case actors.StopAgent:
		return e.Exec
	case actors.Progress:
		return e.Exec
	case actors.StepProgress:
		return e.Exec
	}
	return from.String()
}
