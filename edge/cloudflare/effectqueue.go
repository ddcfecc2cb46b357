package cloudflare

import (
	"context"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// EffectQueue is the Worker's Effects: it performs the actors' effects (the edge's
// Perform: agent starts and stops, projections to D1, check-runs) off the Durable
// Objects' deliveries, in order per execution, each under a time limit.
//
// Order matters because the projections are last-write-wins (a late "running" must
// not overwrite "success"), and the host runs the effects of two messages of one
// actor on two goroutines. Handle only queues, so a delivery never waits on D1 or a
// container. The time limit bounds what a shared runtime cannot rule out: an await
// whose promise belonged to a request that has finished never settles.
//
// Effects are not durable: an effect lost with the runtime is emitted again by the
// actor's Recover when its object next loads, or healed by the protocols (a missed
// agent start is a silent agent, restarted after its boot grace).
type EffectQueue struct {
	perform func(ctx context.Context, from actors.Addr, e actors.Effect)
	limit   time.Duration
	log     *slog.Logger
	queues  []chan effectJob
}

type effectJob struct {
	from actors.Addr
	e    actors.Effect
}

// NewEffectQueue starts workers goroutines (default 4) that call perform, each call
// with a context that ends after limit (default 2 minutes).
func NewEffectQueue(perform func(ctx context.Context, from actors.Addr, e actors.Effect), workers int, limit time.Duration, log *slog.Logger) *EffectQueue {
	if workers <= 0 {
		workers = 4
	}
	if limit <= 0 {
		limit = 2 * time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	q := &EffectQueue{perform: perform, limit: limit, log: log}
	for range workers {
		ch := make(chan effectJob, 1024)
		q.queues = append(q.queues, ch)
		go q.work(ch)
	}
	return q
}

func (q *EffectQueue) work(ch chan effectJob) {
	for j := range ch {
		q.run(j)
	}
}

func (q *EffectQueue) run(j effectJob) {
	ctx, cancel := context.WithTimeout(context.Background(), q.limit)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			q.log.Error("panic in effect", "from", j.from.String(), "effect", j.e, "panic", v)
		}
	}()
	q.perform(ctx, j.from, j.e)
}

// Handle implements Effects: it queues e behind the earlier effects of its execution.
func (q *EffectQueue) Handle(_ context.Context, from actors.Addr, e actors.Effect) {
	h := fnv.New32a()
	h.Write([]byte(effectExec(from, e)))
	q.queues[int(h.Sum32()%uint32(len(q.queues)))] <- effectJob{from, e}
}

// effectExec is the execution an effect is about, or the sender's key.
func effectExec(from actors.Addr, e actors.Effect) string {
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
	return from.Key
}

var _ Effects = (*EffectQueue)(nil)
