package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
)

// fleet plays the edge and the agents around the real reducers: it starts runs,
// answers actors.StartAgent by running an agent in a goroutine (heartbeat, steps,
// exit, all through Host.Call), and checks the invariants as agents come and go:
// at most cap agents per pool, at most one per sandbox.
type fleet struct {
	tb    testing.TB
	cap   int
	steps int
	pause time.Duration // before each step
	host  atomic.Pointer[Host]
	// report, when set, is told about successes and violations (the crash child
	// prints them for its parent).
	report func(kind, detail string)

	mu         sync.Mutex
	active     map[string]int    // pool → agents between StartAgent and AgentExit
	onSandbox  map[string]string // sandbox → execution whose agent is on it
	running    map[string]int    // execution → attempt of its live agent
	maxActive  map[string]int
	success    map[string]bool
	lastOK     time.Time     // when the latest run succeeded
	maxGap     time.Duration // longest wait between two successes: a stall shows here
	violations []string
	restarts   int // agents started for an attempt after the first
	agents     sync.WaitGroup
}

func newFleet(tb testing.TB, cfg kinds.Config, steps int) *fleet {
	return &fleet{tb: tb, cap: cfg.Admission.Cap, steps: steps,
		active: map[string]int{}, onSandbox: map[string]string{}, running: map[string]int{},
		maxActive: map[string]int{}, success: map[string]bool{}}
}

func (f *fleet) violate(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	f.violations = append(f.violations, v)
	if f.report != nil {
		f.report("violation", v)
	}
}

// Handle is the EffectHandler: it runs on the host's writer, so agents run elsewhere.
func (f *fleet) Handle(from actors.Addr, e actors.Effect) {
	switch e := e.(type) {
	case actors.StartAgent:
		f.mu.Lock()
		if e.Attempt > 1 {
			f.restarts++
		}
		if old, ok := f.running[e.Exec]; ok {
			// A new attempt replaces the old agent (the sandbox port would kill it).
			f.stoppedLocked(actors.StartAgent{Exec: e.Exec, Attempt: old, Pool: e.Pool, Sandbox: e.Sandbox})
		}
		f.running[e.Exec] = e.Attempt
		f.active[e.Pool]++
		if n := f.active[e.Pool]; n > f.maxActive[e.Pool] {
			f.maxActive[e.Pool] = n
		}
		if f.active[e.Pool] > f.cap {
			f.violate("pool %s runs %d agents, cap %d", e.Pool, f.active[e.Pool], f.cap)
		}
		if other, ok := f.onSandbox[e.Sandbox]; ok && other != e.Exec {
			f.violate("sandbox %s: %s starts while %s runs", e.Sandbox, e.Exec, other)
		}
		f.onSandbox[e.Sandbox] = e.Exec
		f.agents.Add(1)
		f.mu.Unlock()
		go f.agent(e)
	case actors.Progress:
		switch {
		case e.Status == actors.StatusSuccess:
			f.mu.Lock()
			if !f.success[e.Exec] {
				if f.report != nil {
					f.report("success", e.Exec)
				}
				if now := time.Now(); !f.lastOK.IsZero() {
					f.maxGap = max(f.maxGap, now.Sub(f.lastOK))
				}
				f.lastOK = time.Now()
			}
			f.success[e.Exec] = true
			f.mu.Unlock()
		case e.Status.Terminal():
			f.mu.Lock()
			f.violate("%s ended %s: %v", e.Exec, e.Status, e.Failure)
			f.mu.Unlock()
		}
	}
}

// stopped ends an agent's interval, once.
func (f *fleet) stopped(e actors.StartAgent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stoppedLocked(e)
}

func (f *fleet) stoppedLocked(e actors.StartAgent) {
	if a, ok := f.running[e.Exec]; !ok || a != e.Attempt {
		return
	}
	delete(f.running, e.Exec)
	f.active[e.Pool]--
	if f.onSandbox[e.Sandbox] == e.Exec {
		delete(f.onSandbox, e.Sandbox)
	}
}

// agent is one attempt: a heartbeat, the steps (skipping those the journal holds),
// then exit. Its interval ends before AgentExit is sent, so the slot and lease it
// frees can only be granted after it.
func (f *fleet) agent(e actors.StartAgent) {
	defer f.agents.Done()
	h := f.host.Load()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	to := actors.RunAddr(e.Exec)
	ok := func(m actors.Message) (actors.Message, bool) {
		r, err := h.Call(ctx, to, m)
		if err != nil {
			if !errors.Is(err, ErrStopped) {
				f.tb.Errorf("agent %s: %s: %v", e.Exec, m.Type(), err)
			}
			return nil, false
		}
		if ack, isAck := r.(actors.AgentAck); isAck && !ack.OK {
			return nil, false // superseded or told to stop
		}
		if d, isDec := r.(actors.StepDecision); isDec && (d.Stop || d.Superseded) {
			return nil, false
		}
		return r, true
	}
	defer f.stopped(e)
	if _, alive := ok(actors.AgentHeartbeat{Exec: e.Exec, Attempt: e.Attempt}); !alive {
		return
	}
	for i := range f.steps {
		name := fmt.Sprintf("step-%d", i)
		time.Sleep(f.pause)
		r, alive := ok(actors.StepBegin{Exec: e.Exec, Attempt: e.Attempt, Step: name})
		if !alive {
			return
		}
		if r.(actors.StepDecision).Done {
			continue
		}
		result, _ := json.Marshal(map[string]string{"by": name})
		if _, alive := ok(actors.StepEnd{Exec: e.Exec, Attempt: e.Attempt, Step: name, Result: result}); !alive {
			return
		}
	}
	f.stopped(e)
	ok(actors.AgentExit{Exec: e.Exec, Attempt: e.Attempt, Output: []byte(`{"ok":true}`)})
}

// runStart is run i's start message: pools alternate, sandboxes are shared by
// runs/perSandbox runs of the same pool.
func runStart(i, sandboxes int) actors.RunStart {
	pool := []string{"lean", "browser"}[i%2]
	return actors.RunStart{Exec: fmt.Sprintf("e%05d", i), Run: "offload-test", Pool: pool,
		Sandbox: fmt.Sprintf("%s-sb%03d", pool, (i/2)%sandboxes), MaxDuration: time.Hour}
}

func (f *fleet) successes() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.success)
}

// wait blocks until the n runs from first(0..n-1) succeeded. On timeout it fails with
// where the others stand.
func (f *fleet) wait(n int, timeout time.Duration, exec func(i int) string) {
	f.tb.Helper()
	deadline := time.Now().Add(timeout)
	for f.successes() < n {
		if time.Now().After(deadline) {
			stuck := map[actors.Status][]string{}
			for i := range n {
				f.mu.Lock()
				ok := f.success[exec(i)]
				f.mu.Unlock()
				if ok {
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				r, err := f.host.Load().Call(ctx, actors.RunAddr(exec(i)), actors.RunQuery{})
				cancel()
				st := actors.Status(fmt.Sprint(err))
				if err == nil {
					st = r.(actors.RunStatus).Status
				}
				if len(stuck[st]) < 5 {
					stuck[st] = append(stuck[st], exec(i))
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.tb.Fatalf("%d of %d runs succeeded after %v; agents active %v; unfinished by status (up to 5 each): %v",
				len(f.success), n, timeout, f.active, stuck)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// check fails the test on any violation and reports the peak concurrency per pool.
func (f *fleet) check() {
	f.tb.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, v := range f.violations {
		f.tb.Error(v)
	}
	for pool, n := range f.maxActive {
		if n < f.cap {
			f.tb.Errorf("pool %s ran at most %d agents at once: the cap (%d) was never reached", pool, n, f.cap)
		}
	}
	f.tb.Logf("peak agents per pool %v (cap %d); agent restarts %d; longest wait between two successes %v",
		f.maxActive, f.cap, f.restarts, f.maxGap.Round(time.Millisecond))
}
