package kinds_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/admission"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/actors/lease"
	"github.com/flare-dispatch/flare-dispatch/actors/run"
)

// world is a host in miniature over a virtual clock: it persists what each Apply
// dirtied (so a restart sees exactly what a real host would have stored), delivers
// sends in any order, can drop them, restart everything from storage, and plays the
// agents. Invariants are checked after every step.
type world struct {
	t         *testing.T
	rng       *rand.Rand
	now       time.Time
	factory   actors.Factory
	cfg       kinds.Config
	live      map[actors.Addr]actors.Actor
	stored    map[actors.Addr]*stored
	mail      []actors.Send
	agents    map[string]*agent // by execution
	runs      map[string]runInfo
	dead      map[string]bool // runs whose actor and agent vanished for good
	steps     int
	grants    int
	suspends  bool // agents may suspend (sleep, approval, fan-out)
	stuck     int  // alarm rounds in a row that did not advance the clock
	suspended int
	// fromWaiters counts the messages queued runs sent their pool.
	fromWaiters int
}

type stored struct {
	header []byte
	rows   map[string][]byte
}

type runInfo struct{ pool, sandbox string }

// agent plays the agent of one attempt: it walks its steps, then exits.
type agent struct {
	exec    string
	attempt int
	pool    string
	sandbox string
	steps   int
	next    int  // next step index
	inStep  bool // began step next, not yet ended
	active  bool // started and not stopped (counts against the cap)
	crashed bool // silent for good (still active until the run stops it)
	fail    bool
}

func newWorld(t *testing.T, seed uint64, cfg kinds.Config) *world {
	return &world{
		t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), cfg: cfg, factory: kinds.Factory(cfg),
		live: map[actors.Addr]actors.Actor{}, stored: map[actors.Addr]*stored{},
		agents: map[string]*agent{}, runs: map[string]runInfo{}, dead: map[string]bool{},
	}
}

func (w *world) actor(a actors.Addr) actors.Actor {
	if x, ok := w.live[a]; ok {
		return x
	}
	x, err := w.factory(a)
	if err != nil {
		w.t.Fatal(err)
	}
	if s := w.stored[a]; s != nil {
		if err := x.Load(s.header, s.rows); err != nil {
			w.t.Fatal(err)
		}
	}
	w.live[a] = x
	return x
}

// apply delivers m to a, persists, checks invariants and returns the effects. The
// caller decides what happens to them (performed, or lost in a crash).
func (w *world) apply(a actors.Addr, m actors.Message) []actors.Effect {
	if a.Kind == actors.KindRun && w.dead[a.Key] {
		return nil
	}
	x := w.actor(a)
	before := w.queueKeys()
	fx := x.Apply(w.now, m)
	w.persist(a, x)
	w.steps++
	w.check(a, m, fx, before)
	if r, ok := x.(*run.Actor); ok && r.Status() == actors.StatusQueued {
		for _, e := range fx {
			if s, ok := e.(actors.Send); ok && s.To.Kind == actors.KindAdmission {
				w.fromWaiters++
			}
		}
	}
	return fx
}

func (w *world) persist(a actors.Addr, x actors.Actor) {
	h, rows := x.Dirty()
	s := w.stored[a]
	if s == nil {
		s = &stored{rows: map[string][]byte{}}
		w.stored[a] = s
	}
	if h {
		b, err := x.Header()
		if err != nil {
			w.t.Fatal(err)
		}
		s.header = b
	}
	for _, k := range rows {
		b, ok, err := x.Row(k)
		if err != nil {
			w.t.Fatal(err)
		}
		if ok {
			s.rows[k] = b
		} else {
			delete(s.rows, k)
		}
	}
}

// perform carries out effects: sends go to the mailbox, agents start and stop.
func (w *world) perform(fx []actors.Effect) (reply actors.Message) {
	for _, e := range fx {
		switch e := e.(type) {
		case actors.Send:
			w.mail = append(w.mail, e)
		case actors.Reply:
			reply = e.Msg
		case actors.StartAgent:
			if old := w.agents[e.Exec]; old != nil && old.active && old.attempt != e.Attempt {
				old.active = false // the sandbox port replaces the process
			}
			if e.Sandbox == brokenSandbox || w.rng.IntN(10) == 0 {
				// The platform refuses the start (always for the broken sandbox, now and
				// then for the others); the edge tells the run, a send that may be lost.
				w.mail = append(w.mail, actors.Send{To: actors.RunAddr(e.Exec),
					Msg: actors.AgentStartFailed{Exec: e.Exec, Attempt: e.Attempt, Cause: "no capacity"}})
				continue
			}
			w.agents[e.Exec] = &agent{exec: e.Exec, attempt: e.Attempt, pool: e.Pool, sandbox: e.Sandbox,
				steps: 1 + w.rng.IntN(3), active: true, fail: w.rng.IntN(8) == 0}
		case actors.StopAgent:
			if ag := w.agents[e.Exec]; ag != nil && ag.attempt == e.Attempt {
				ag.active = false
			}
		}
	}
	return reply
}

// brokenSandbox can never start (its image is missing): runs leasing it must end
// failed, not hold their slot.
const brokenSandbox = "sb3"

func (w *world) start(exec, pool, sandbox string, order time.Time) {
	w.startChild(exec, pool, sandbox, order, "")
}

func (w *world) startChild(exec, pool, sandbox string, order time.Time, parent string) {
	w.runs[exec] = runInfo{pool, sandbox}
	fx := w.apply(actors.RunAddr(exec), actors.RunStart{Exec: exec, Run: "offload-test", Pool: pool, Sandbox: sandbox,
		OrderKey: order, Parent: parent, MaxDuration: 2 * time.Hour})
	w.perform(fx)
}

// deliver hands one mailbox message over (or loses it).
func (w *world) deliver(i int, drop bool) {
	s := w.mail[i]
	w.mail = slices.Delete(w.mail, i, i+1)
	if drop {
		return
	}
	w.perform(w.apply(s.To, s.Msg))
}

// agentStep lets one agent take its next action, as the edge's agent API would.
func (w *world) agentStep(ag *agent) {
	call := func(m actors.Message) actors.Message {
		return w.perform(w.apply(actors.RunAddr(ag.exec), m))
	}
	refused := func(r actors.Message) bool {
		if ack, ok := r.(actors.AgentAck); ok && (ack.Stop || ack.Superseded) {
			ag.crashed = true // the agent exits when told to; the run stops it
			return true
		}
		return r == nil
	}
	if w.rng.IntN(3) == 0 {
		refused(call(actors.AgentHeartbeat{Exec: ag.exec, Attempt: ag.attempt}))
		return
	}
	if w.suspends && !ag.inStep && w.rng.IntN(12) == 0 {
		// Suspend: for a while, for an approval event, or for two fan-out children.
		s := actors.AgentSuspend{Exec: ag.exec, Attempt: ag.attempt}
		switch w.rng.IntN(3) {
		case 0:
			s.Until = w.now.Add(time.Duration(1+w.rng.IntN(90)) * time.Second)
		case 1:
			s.Event = "approve"
			s.Until = w.now.Add(30 * time.Minute) // the approval's timeout
		default:
			for i := range 2 {
				child := fmt.Sprintf("%s.c%d", ag.exec, i)
				if _, ok := w.runs[child]; !ok && len(w.runs) < 80 {
					w.startChild(child, ag.pool, fmt.Sprintf("sb%d", w.rng.IntN(4)), time.Time{}, ag.exec)
				}
				s.Children = append(s.Children, child)
			}
		}
		if !refused(call(s)) {
			ag.crashed = true // the attempt is over; the run stops it and starts a new one later
			w.suspended++
		}
		return
	}
	name := fmt.Sprintf("step-%d", ag.next)
	switch {
	case ag.next == ag.steps:
		var f *actors.Failure
		if ag.fail {
			f = &actors.Failure{Tag: "ExecFailed", Message: "exit 1"}
		}
		if !refused(call(actors.AgentExit{Exec: ag.exec, Attempt: ag.attempt, Failure: f})) {
			ag.active, ag.crashed = false, true
		}
	case !ag.inStep:
		r := call(actors.StepBegin{Exec: ag.exec, Attempt: ag.attempt, Step: name})
		if refused(r) {
			return
		}
		d := r.(actors.StepDecision)
		if d.Done {
			if string(d.Result) != fmt.Sprintf(`{"by":%q}`, name) {
				w.t.Fatalf("%s: journal returned %s for %s", ag.exec, d.Result, name)
			}
			ag.next++
			return
		}
		ag.inStep = true
	default:
		r := call(actors.StepEnd{Exec: ag.exec, Attempt: ag.attempt, Step: name, Result: []byte(fmt.Sprintf(`{"by":%q}`, name))})
		if !refused(r) {
			ag.inStep = false
			ag.next++
		}
	}
}

// restart throws every live actor away and reloads them from storage, delivering Recover.
func (w *world) restart() {
	w.live = map[actors.Addr]actors.Actor{}
	w.mail = nil // nothing in flight survives a crash
	addrs := make([]actors.Addr, 0, len(w.stored))
	for a := range w.stored {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, func(x, y actors.Addr) int {
		if x.String() < y.String() {
			return -1
		}
		return 1
	})
	w.rng.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	for _, a := range addrs {
		w.perform(w.apply(a, actors.Recover{}))
	}
}

// alarm advances the clock to the earliest wake (at most max ahead) and fires due alarms.
func (w *world) alarm(max time.Duration) {
	next := w.now.Add(max)
	for _, a := range w.addrs() {
		if wk := w.actor(a).Wake(); !wk.IsZero() && wk.Before(next) {
			next = wk
		}
	}
	if next.After(w.now) {
		w.now, w.stuck = next, 0
	} else if w.stuck++; w.stuck > 1000 {
		// A host would spin: an alarm that leaves its wake in the past fires forever.
		w.t.Fatalf("alarms fire again and again without time passing: %s", w.describe())
	}
	for _, a := range w.addrs() {
		if wk := w.actor(a).Wake(); !wk.IsZero() && !wk.After(w.now) {
			w.perform(w.apply(a, actors.Alarm{}))
		}
	}
}

func (w *world) addrs() []actors.Addr {
	out := make([]actors.Addr, 0, len(w.stored))
	for a := range w.stored {
		if a.Kind == actors.KindRun && w.dead[a.Key] {
			continue
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(x, y actors.Addr) int {
		if x.String() < y.String() {
			return -1
		}
		return 1
	})
	return out
}

func (w *world) queueKeys() map[string]map[string]time.Time {
	out := map[string]map[string]time.Time{}
	for a, x := range w.live {
		if ad, ok := x.(*admission.Actor); ok {
			execs, keys := ad.Queue()
			m := map[string]time.Time{}
			for i := range execs {
				m[execs[i]] = keys[i]
			}
			for _, h := range ad.Holders() {
				m[h] = time.Time{} // known, not queued
			}
			out[a.Key] = m
		}
	}
	return out
}

// check asserts the invariants after one Apply.
func (w *world) check(a actors.Addr, m actors.Message, fx []actors.Effect, before map[string]map[string]time.Time) {
	t := w.t
	t.Helper()
	active := map[string]int{}
	bySandbox := map[string][]string{}
	for _, ag := range w.agents {
		if ag.active {
			active[ag.pool]++
			bySandbox[ag.sandbox] = append(bySandbox[ag.sandbox], ag.exec)
		}
	}
	for a, x := range w.live {
		switch x := x.(type) {
		case *admission.Actor:
			if n := len(x.Holders()); n > x.Cap() {
				t.Fatalf("step %d: pool %s has %d holders, cap %d", w.steps, a.Key, n, x.Cap())
			}
			if active[a.Key] > x.Cap() {
				t.Fatalf("step %d: pool %s runs %d agents at once, cap %d", w.steps, a.Key, active[a.Key], x.Cap())
			}
		case *lease.Actor:
			if len(bySandbox[a.Key]) > 1 {
				t.Fatalf("step %d: sandbox %s used by %v at once", w.steps, a.Key, bySandbox[a.Key])
			}
		}
	}
	// A waiting run whose releases were acknowledged holds no slot and no lease, but
	// for a late duplicate request's grant still on its way to it (it gives that back).
	for ra, x := range w.live {
		r, ok := x.(*run.Actor)
		if !ok || r.Status() != actors.StatusWaiting {
			continue
		}
		slotOwed, leaseOwed := r.Owes()
		if ad, ok := w.live[actors.AdmissionAddr(r.Pool())].(*admission.Actor); ok && !slotOwed && slices.Contains(ad.Holders(), ra.Key) && !w.inFlight(ra, fx, actors.AdmitGranted{Exec: ra.Key, Ticket: r.Ticket()}) {
			h, _ := r.Header()
			var mail []string
			for _, m := range w.mail {
				if m.To == ra || m.To == actors.AdmissionAddr(r.Pool()) {
					b, _ := actors.Marshal(m.Msg)
					mail = append(mail, m.To.String()+" "+string(b))
				}
			}
			t.Fatalf("step %d: waiting %s still holds a slot\n%s\nlast msg %s %#v\nmail %v", w.steps, ra.Key, h, a, m, mail)
		}
		if l, ok := w.live[actors.LeaseAddr(r.Sandbox())].(*lease.Actor); ok && !leaseOwed && l.Holder() == ra.Key && !w.inFlight(ra, fx, actors.LeaseGranted{Exec: ra.Key, Ticket: r.Ticket(), Sandbox: r.Sandbox()}) {
			t.Fatalf("step %d: waiting %s still holds its sandbox", w.steps, ra.Key)
		}
	}
	w.checkOffers(a, fx)
	// FIFO: a grant goes to nobody behind a live waiter that is still queued.
	ad, ok := w.live[a].(*admission.Actor)
	if !ok {
		return
	}
	keys := before[a.Key]
	if req, ok := m.(actors.AdmitRequest); ok {
		if _, known := keys[req.Exec]; !known {
			k := req.OrderKey
			if k.IsZero() {
				k = w.now
			}
			if keys == nil {
				keys = map[string]time.Time{}
			}
			keys[req.Exec] = k
		}
	}
	queued, qkeys := ad.Queue()
	for _, e := range fx {
		s, ok := e.(actors.Send)
		if !ok {
			continue
		}
		g, ok := s.Msg.(actors.AdmitGranted)
		if !ok {
			continue
		}
		gk, known := keys[g.Exec]
		if !known || gk.IsZero() {
			continue // a repeated grant to a holder
		}
		w.grants++
		for i, q := range queued {
			if qkeys[i].Before(gk) || qkeys[i].Equal(gk) && q < g.Exec {
				t.Fatalf("step %d: %s granted while %s (earlier) still queued in %s", w.steps, g.Exec, q, a.Key)
			}
		}
	}
}

// checkOffers asserts the grant/accept protocol after one Apply:
//   - a run holds a slot (admitted, leased, running: it may lease and start an agent)
//     only if its pool admitted it, i.e. received its acceptance of an offer: an offer
//     alone starts nothing;
//   - an offer not accepted is withdrawn within AckTTL plus one sweep, so a dead
//     waiter cannot hold a slot;
//   - a queued run heartbeats its pool only once its wait is past its deadline (it
//     polls for a time-out it may have missed); before that a waiter is silent.
func (w *world) checkOffers(a actors.Addr, fx []actors.Effect) {
	t := w.t
	t.Helper()
	for ra, x := range w.live {
		r, ok := x.(*run.Actor)
		if !ok || w.dead[ra.Key] {
			continue
		}
		switch r.Status() {
		case actors.StatusAdmitted, actors.StatusLeased, actors.StatusRunning:
		default:
			continue
		}
		ad, ok := w.live[actors.AdmissionAddr(r.Pool())].(*admission.Actor)
		if !ok {
			continue
		}
		if tk, ok := ad.Ticket(ra.Key); !ok || tk != r.Ticket() || !slices.Contains(ad.Admitted(), ra.Key) {
			t.Fatalf("step %d: %s is %s (ticket %d) but its pool has not admitted it (entry ticket %d, known %v; offers %v)",
				w.steps, ra.Key, r.Status(), r.Ticket(), tk, ok, ad.Offers())
		}
	}
	for pa, x := range w.live {
		ad, ok := x.(*admission.Actor)
		if !ok {
			continue
		}
		for exec, at := range ad.Offers() {
			if d := w.now.Sub(at); d > w.cfg.Admission.AckTTL+w.cfg.Admission.Tick {
				t.Fatalf("step %d: %s's offer in %s pending for %s", w.steps, exec, pa.Key, d)
			}
		}
	}
	r, ok := w.live[a].(*run.Actor)
	if !ok || r.Status() != actors.StatusQueued {
		return
	}
	for _, e := range fx {
		if s, ok := e.(actors.Send); ok && s.To.Kind == actors.KindAdmission {
			if _, beat := s.Msg.(actors.AdmitHeartbeat); beat && (r.Queue() == nil || w.now.Before(r.Queue().Deadline)) {
				t.Fatalf("step %d: waiter %s heartbeats its pool before its wait's deadline (queue %+v)", w.steps, a.Key, r.Queue())
			}
		}
	}
}

// settle delivers everything reliably until every run is over and every pool and
// lease is empty, or fails after a long virtual time.
func (w *world) settle() {
	for _, exec := range w.sortedRuns() {
		w.perform(w.apply(actors.RunAddr(exec), actors.RunEvent{Exec: exec, Kind: "approve", Payload: []byte(`{"ok":true}`)}))
	}
	limit := w.now.Add(6 * time.Hour)
	for w.now.Before(limit) {
		for n := 0; len(w.mail) > 0; n++ {
			if n > 1_000_000 {
				w.t.Fatalf("a million messages without quiet: %v", w.mail[:min(len(w.mail), 6)])
			}
			w.deliver(0, false)
		}
		progressed := false
		if w.steps > 50_000_000 {
			w.t.Fatalf("no quiet after %d steps: %s", w.steps, w.describe())
		}
		for _, exec := range w.sortedAgents() {
			ag := w.agents[exec]
			if ag.active && !ag.crashed {
				w.agentStep(ag)
				progressed = true
			}
		}
		if progressed {
			continue
		}
		if w.quiet() {
			return
		}
		w.alarm(time.Hour)
	}
	w.t.Fatalf("not settled after 6 virtual hours: %s", w.describe())
}

// inFlight reports whether m is on its way to a: in the mailbox, or among the effects
// of the step being checked.
func (w *world) inFlight(a actors.Addr, fx []actors.Effect, m actors.Message) bool {
	for _, s := range w.mail {
		if s.To == a && s.Msg == m {
			return true
		}
	}
	for _, e := range fx {
		if s, ok := e.(actors.Send); ok && s.To == a && s.Msg == m {
			return true
		}
	}
	return false
}

func (w *world) sortedRuns() []string {
	out := make([]string, 0, len(w.runs))
	for k := range w.runs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (w *world) sortedAgents() []string {
	out := make([]string, 0, len(w.agents))
	for k := range w.agents {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (w *world) quiet() bool {
	if len(w.mail) > 0 {
		return false
	}
	for _, a := range w.addrs() {
		x := w.actor(a)
		if a.Kind == actors.KindRun && !x.(*run.Actor).Status().Terminal() {
			return false
		}
		if !x.Idle() {
			return false
		}
	}
	return true
}

func (w *world) describe() string {
	s := ""
	for _, a := range w.addrs() {
		x := w.actor(a)
		h, _ := x.Header()
		if !x.Idle() {
			s += fmt.Sprintf("\n  %s busy: %s", a, h)
		}
	}
	return s
}

// TestRandomInterleavings drives many runs through random delivery orders, message
// drops, agent crashes, vanished runs and whole-host restarts (some losing the
// effects of the step just persisted), checking the invariants after every step, and
// then that everything finishes and every slot and lease is given back.
func TestRandomInterleavings(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	if n, err := strconv.Atoi(os.Getenv("FLARE_SEEDS")); err == nil {
		seeds = n // a longer soak: FLARE_SEEDS=2000 go test ./actors/kinds/
	}
	totalSuspends, totalStartFailed := 0, 0
	defer func() {
		if !t.Failed() && totalSuspends == 0 {
			t.Error("no agent ever suspended: the test exercised no resume")
		}
		if !t.Failed() && totalStartFailed == 0 {
			t.Error("no run failed with SandboxStartFailed: the test exercised no refused start")
		}
	}()
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			cfg := kinds.DefaultConfig()
			cfg.Admission.Cap = 1 + int(seed%3)
			// Here a message may stay in the mailbox for many virtual minutes, far longer
			// than in a host, so released tickets are remembered longer.
			cfg.Admission.Forget, cfg.Lease.Forget = time.Hour, time.Hour
			w := newWorld(t, seed, cfg)
			w.suspends = true
			pools := []string{"lean", "browser"}
			nRuns := 0
			for range 3000 {
				switch r := w.rng.IntN(100); {
				case r < 8 && nRuns < 40:
					exec := fmt.Sprintf("r%02d", nRuns)
					nRuns++
					var order time.Time
					if nRuns > 2 && w.rng.IntN(4) == 0 {
						order = w.now.Add(-time.Duration(w.rng.IntN(60)) * time.Second) // a fan-out child
					}
					w.start(exec, pools[w.rng.IntN(2)], fmt.Sprintf("sb%d", w.rng.IntN(4)), order)
				case r < 60 && len(w.mail) > 0:
					w.deliver(w.rng.IntN(len(w.mail)), w.rng.IntN(10) == 0)
				case r < 85:
					execs := w.sortedAgents()
					if len(execs) == 0 {
						continue
					}
					ag := w.agents[execs[w.rng.IntN(len(execs))]]
					if ag.active && !ag.crashed {
						if w.rng.IntN(40) == 0 {
							ag.crashed = true // killed mid-step: silent from now on
						} else {
							w.agentStep(ag)
						}
					}
				case r < 95:
					w.alarm(time.Duration(1+w.rng.IntN(30)) * time.Second)
				case r < 96 && nRuns > 0:
					exec := fmt.Sprintf("r%02d", w.rng.IntN(nRuns))
					w.perform(w.apply(actors.RunAddr(exec), actors.RunCancel{Exec: exec, Reason: "test"}))
				case r < 97 && len(w.runs) > 0:
					runs := w.sortedRuns()
					exec := runs[w.rng.IntN(len(runs))]
					w.perform(w.apply(actors.RunAddr(exec), actors.RunEvent{Exec: exec, Kind: "approve"}))
				case r < 98 && nRuns > 0 && len(w.dead) < 2:
					// A run vanishes with its agent: its slot and lease must be reclaimed.
					exec := fmt.Sprintf("r%02d", w.rng.IntN(nRuns))
					w.dead[exec] = true
					if ag := w.agents[exec]; ag != nil {
						ag.active = false
					}
				case r < 100:
					if w.rng.IntN(2) == 0 && len(w.mail) > 0 {
						w.mail = w.mail[:w.rng.IntN(len(w.mail))] // crash between persist and send
					}
					w.restart()
				}
			}
			w.settle()
			if w.grants == 0 {
				t.Fatal("no grant observed: the test exercised nothing")
			}
			totalSuspends += w.suspended
			for exec := range w.runs {
				if w.dead[exec] {
					continue
				}
				ra := w.actor(actors.RunAddr(exec)).(*run.Actor)
				if !ra.Status().Terminal() {
					t.Fatalf("%s ended %s", exec, ra.Status())
				}
				if f := ra.Failure(); f != nil && f.Tag == actors.TagSandboxStartFailed {
					totalStartFailed++
				}
				if ra.Sandbox() == brokenSandbox && ra.Status() == actors.StatusSuccess {
					t.Fatalf("%s succeeded on a sandbox that never starts", exec)
				}
			}
		})
	}
}
