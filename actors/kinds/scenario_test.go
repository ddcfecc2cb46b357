package kinds_test

import (
	"encoding/json"
	"fmt"
	"github.com/flare-dispatch/flare-dispatch/actors/admission"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/actors/run"
)

// drain delivers the mailbox in order and collects the Progress effects per execution.
func (w *world) drain() map[string][]actors.Progress {
	out := map[string][]actors.Progress{}
	for len(w.mail) > 0 {
		s := w.mail[0]
		w.mail = w.mail[1:]
		for _, e := range w.apply(s.To, s.Msg) {
			if p, ok := e.(actors.Progress); ok {
				out[p.Exec] = append(out[p.Exec], p)
			}
			w.perform([]actors.Effect{e})
		}
	}
	return out
}

// advance moves the clock forward by d, firing every alarm due on the way.
func (w *world) advance(d time.Duration) {
	end := w.now.Add(d)
	for w.now.Before(end) {
		w.alarm(end.Sub(w.now))
		w.drain()
	}
}

func (w *world) status(exec string) actors.Status {
	return w.actor(actors.RunAddr(exec)).(*run.Actor).Status()
}

func TestCapOneQueuesFIFOAndReportsPositions(t *testing.T) {
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 1
	w := newWorld(t, 1, cfg)
	for _, e := range []string{"a", "b", "c"} {
		w.start(e, "lean", "sb-"+e, time.Time{})
		w.now = w.now.Add(time.Second)
	}
	prog := w.drain()
	if w.status("a") != actors.StatusLeased || w.status("b") != actors.StatusQueued || w.status("c") != actors.StatusQueued {
		t.Fatalf("statuses a=%s b=%s c=%s", w.status("a"), w.status("b"), w.status("c"))
	}
	last := prog["c"][len(prog["c"])-1]
	if last.Queue == nil || last.Queue.Position != 1 || last.Queue.Busy != 1 || last.Queue.Cap != 1 {
		t.Fatalf("c queue = %+v, want behind 1 run, 1/1 in use", last.Queue)
	}
	if want := w.now.Add(20 * time.Minute); !last.Queue.Deadline.Equal(want) { // queued when delivered
		t.Fatalf("deadline %s, want %s", last.Queue.Deadline, want)
	}
	// a finishes: b is admitted at once, c's position changes to 0 on the next sweep.
	w.perform(w.apply(actors.RunAddr("a"), actors.AgentExit{Exec: "a", Attempt: 1}))
	w.drain()
	if w.status("b") != actors.StatusLeased {
		t.Fatalf("b = %s after a finished", w.status("b"))
	}
	w.alarm(6 * time.Second)
	prog = w.drain()
	if got := prog["c"]; len(got) == 0 || got[len(got)-1].Queue.Position != 0 {
		t.Fatalf("c was not told it moved to the front: %+v", got)
	}
}

func TestAdmissionTimesOutAfterTwentyMinutes(t *testing.T) {
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 1
	w := newWorld(t, 2, cfg)
	w.start("holder", "lean", "sb1", time.Time{})
	w.start("waiter", "lean", "sb2", time.Time{})
	w.drain()
	for range 300 { // keep the holder's agent alive; the waiter keeps heartbeating
		w.perform(w.apply(actors.RunAddr("holder"), actors.AgentHeartbeat{Exec: "holder", Attempt: 1}))
		w.alarm(5 * time.Second)
		w.drain()
	}
	ra := w.actor(actors.RunAddr("waiter")).(*run.Actor)
	if ra.Status() != actors.StatusFailure || ra.Failure() == nil || ra.Failure().Tag != actors.TagAdmissionTimedOut {
		t.Fatalf("waiter = %s %+v, want failure AdmissionTimedOut", ra.Status(), ra.Failure())
	}
	var d struct{ QueuedForMs, Position, PoolBusy int64 }
	if err := json.Unmarshal(ra.Failure().Detail, &d); err != nil || d.QueuedForMs < (20*time.Minute).Milliseconds() || d.PoolBusy != 1 {
		t.Fatalf("detail %s (%v)", ra.Failure().Detail, err)
	}
	if w.status("holder") != actors.StatusRunning {
		t.Fatalf("holder = %s", w.status("holder"))
	}
}

func TestSharedSandboxSerializesAndBusyAfterTenMinutes(t *testing.T) {
	w := newWorld(t, 3, kinds.DefaultConfig())
	w.start("first", "lean", "same", time.Time{})
	w.start("second", "lean", "same", time.Time{})
	w.drain()
	if w.status("first") != actors.StatusLeased || w.status("second") != actors.StatusAdmitted {
		t.Fatalf("first=%s second=%s", w.status("first"), w.status("second"))
	}
	for range 130 {
		w.perform(w.apply(actors.RunAddr("first"), actors.AgentHeartbeat{Exec: "first", Attempt: 1}))
		w.alarm(5 * time.Second)
		w.drain()
	}
	ra := w.actor(actors.RunAddr("second")).(*run.Actor)
	if ra.Failure() == nil || ra.Failure().Tag != actors.TagContainerBusy {
		t.Fatalf("second = %s %+v, want ContainerBusy", ra.Status(), ra.Failure())
	}
}

func TestSilentAgentIsRestartedThenTheRunFails(t *testing.T) {
	w := newWorld(t, 4, kinds.DefaultConfig())
	w.start("x", "lean", "sb", time.Time{})
	w.drain()
	// Attempt 1 completes one step, then dies.
	x := actors.RunAddr("x")
	w.perform(w.apply(x, actors.StepBegin{Exec: "x", Attempt: 1, Step: "checkout"}))
	w.perform(w.apply(x, actors.StepEnd{Exec: "x", Attempt: 1, Step: "checkout", Result: []byte(`{"dir":"/w"}`)}))
	w.advance(11 * time.Second)
	if a := w.actor(x).(*run.Actor).Attempt(); a != 2 {
		t.Fatalf("attempt = %d after a silent agent, want 2", a)
	}
	// The old attempt is refused; the new one gets the journal's result without rerunning.
	if r := w.perform(w.apply(x, actors.AgentHeartbeat{Exec: "x", Attempt: 1})); !r.(actors.AgentAck).Superseded {
		t.Fatalf("old attempt not refused: %+v", r)
	}
	d := w.perform(w.apply(x, actors.StepBegin{Exec: "x", Attempt: 2, Step: "checkout"})).(actors.StepDecision)
	if !d.Done || string(d.Result) != `{"dir":"/w"}` {
		t.Fatalf("decision %+v, want the recorded result", d)
	}
	w.advance(5 * time.Minute) // attempts 2 and 3 go silent too
	ra := w.actor(x).(*run.Actor)
	if ra.Status() != actors.StatusFailure || ra.Failure().Tag != actors.TagAgentLost {
		t.Fatalf("x = %s %+v, want AgentLost after 3 attempts", ra.Status(), ra.Failure())
	}
	// Slot and lease came back: a new run on the same sandbox starts at once.
	w.start("y", "lean", "sb", time.Time{})
	w.drain()
	if w.status("y") != actors.StatusLeased {
		t.Fatalf("y = %s, the slot or lease was not released", w.status("y"))
	}
}

func TestCancelAndDeadlineReleaseEverything(t *testing.T) {
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 1
	w := newWorld(t, 5, cfg)
	w.perform(w.apply(actors.RunAddr("slow"), actors.RunStart{Exec: "slow", Pool: "lean", Sandbox: "s", MaxDuration: time.Minute}))
	w.start("next", "lean", "s", time.Time{})
	w.drain()
	for range 20 {
		w.perform(w.apply(actors.RunAddr("slow"), actors.AgentHeartbeat{Exec: "slow", Attempt: 1}))
		w.alarm(5 * time.Second)
		w.drain()
	}
	if w.status("slow") != actors.StatusTimedOut {
		t.Fatalf("slow = %s, want timed_out", w.status("slow"))
	}
	if w.status("next") != actors.StatusLeased {
		t.Fatalf("next = %s after slow timed out", w.status("next"))
	}
	r := w.perform(w.apply(actors.RunAddr("next"), actors.RunCancel{Exec: "next", Reason: "by admin"})).(actors.RunStatus)
	if r.Status != actors.StatusCancelled {
		t.Fatalf("cancel answered %+v", r)
	}
	w.drain()
	if !w.quiet() {
		t.Fatalf("not idle after cancel: %s", w.describe())
	}
}

func TestMessagesRoundTripThroughTheCodec(t *testing.T) {
	in := []actors.Message{
		actors.RunStart{Exec: "e", Run: "r", Pool: "lean", Sandbox: "s", MaxDuration: time.Minute},
		actors.AdmitQueued{Exec: "e", Queue: actors.QueueInfo{Position: 2, Busy: 1, Cap: 1}},
		actors.StepEnd{Exec: "e", Attempt: 1, Step: "x", Result: json.RawMessage(`{"a":1}`), Failure: &actors.Failure{Tag: "ExecFailed", Message: "m"}},
		actors.Alarm{},
	}
	for _, m := range in {
		b, err := actors.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out, err := actors.Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := actors.Marshal(out)
		if string(b) != string(b2) || out.Type() != m.Type() {
			t.Fatalf("round trip %s: %s != %s", m.Type(), b, b2)
		}
	}
	if _, err := actors.Unmarshal([]byte(`{"type":"nope","body":{}}`)); err == nil {
		t.Fatal("unknown type accepted")
	}
}

func TestFanOutParentHoldsNoSlotWhileChildrenRunWithCapOne(t *testing.T) {
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 1
	w := newWorld(t, 6, cfg)
	w.start("parent", "lean", "sb-p", time.Time{})
	w.drain()
	p := actors.RunAddr("parent")
	w.perform(w.apply(p, actors.AgentHeartbeat{Exec: "parent", Attempt: 1}))
	var kids []string
	for i := range 3 {
		kid := fmt.Sprintf("parent:shard-%d", i+1)
		kids = append(kids, kid)
		w.startChild(kid, "lean", "sb-"+kid, w.actor(p).(*run.Actor).OrderKey(), "parent")
	}
	if ack := w.perform(w.apply(p, actors.AgentSuspend{Exec: "parent", Attempt: 1, Children: kids})).(actors.AgentAck); !ack.OK {
		t.Fatalf("suspend refused: %+v", ack)
	}
	w.drain()
	if w.status("parent") != actors.StatusWaiting {
		t.Fatalf("parent = %s", w.status("parent"))
	}
	// With one slot, the children run one after another while the parent waits.
	for _, kid := range kids {
		if w.status(kid) != actors.StatusLeased {
			t.Fatalf("%s = %s; the waiting parent should hold no slot", kid, w.status(kid))
		}
		w.perform(w.apply(actors.RunAddr(kid), actors.AgentExit{Exec: kid, Attempt: 1}))
		w.drain()
	}
	if w.status("parent") != actors.StatusLeased {
		t.Fatalf("parent = %s after its children ended, want a new attempt", w.status("parent"))
	}
	if a := w.actor(p).(*run.Actor).Attempt(); a != 2 {
		t.Fatalf("parent attempt %d, want 2", a)
	}
}

func TestEventResumesAWaitingRunOnceAndRefusesASecond(t *testing.T) {
	w := newWorld(t, 7, kinds.DefaultConfig())
	w.start("x", "lean", "sb", time.Time{})
	w.drain()
	x := actors.RunAddr("x")
	// The agent looks for the event first (a running entry), then suspends for it.
	w.perform(w.apply(x, actors.StepBegin{Exec: "x", Attempt: 1, Step: actors.EventStep("approve")}))
	w.perform(w.apply(x, actors.AgentSuspend{Exec: "x", Attempt: 1, Event: "approve", Until: w.now.Add(time.Hour)}))
	w.drain()
	ack := w.perform(w.apply(x, actors.RunEvent{Exec: "x", Kind: "approve", Payload: []byte(`{"by":"ops"}`)})).(actors.RunEventAck)
	if !ack.Delivered || ack.Duplicate {
		t.Fatalf("first event: %+v", ack)
	}
	w.drain()
	if w.status("x") != actors.StatusLeased {
		t.Fatalf("x = %s after the event, want a new attempt", w.status("x"))
	}
	d := w.perform(w.apply(x, actors.StepBegin{Exec: "x", Attempt: 2, Step: actors.EventStep("approve")})).(actors.StepDecision)
	if !d.Done || string(d.Result) != `{"by":"ops"}` {
		t.Fatalf("replayed event step %+v", d)
	}
	if again := w.perform(w.apply(x, actors.RunEvent{Exec: "x", Kind: "approve"})).(actors.RunEventAck); again.Delivered || !again.Duplicate {
		t.Fatalf("second event: %+v", again)
	}
}

func TestSleepSuspendsAndResumesAtItsTime(t *testing.T) {
	w := newWorld(t, 8, kinds.DefaultConfig())
	w.start("s", "lean", "sb", time.Time{})
	w.drain()
	wake := w.now.Add(40 * time.Minute)
	w.perform(w.apply(actors.RunAddr("s"), actors.AgentSuspend{Exec: "s", Attempt: 1, Until: wake}))
	w.drain()
	w.advance(39 * time.Minute)
	if w.status("s") != actors.StatusWaiting {
		t.Fatalf("s = %s before its wake time", w.status("s"))
	}
	w.advance(2 * time.Minute)
	if w.status("s") != actors.StatusLeased {
		t.Fatalf("s = %s after its wake time", w.status("s"))
	}
}

// TestStateWrittenBeforeOffersLoads: state stored by the code before the offer
// protocol (testdata/state-before-offers.json, dumped by that code: a pool of cap 2
// with two admitted holders, two queued waiters that heartbeat, a released-ticket row;
// an admitted run; a queued run that never recorded being heard) loads and carries on,
// as teams' Durable Objects must after a deploy: holders keep their slots, the old
// waiter asks once and then falls silent, and a freed slot is offered to it, accepted
// and confirmed.
func TestStateWrittenBeforeOffersLoads(t *testing.T) {
	b, err := os.ReadFile("testdata/state-before-offers.json")
	if err != nil {
		t.Fatal(err)
	}
	var old []struct {
		Addr   string            `json:"addr"`
		Header json.RawMessage   `json:"header"`
		Rows   map[string]string `json:"rows"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 2
	w := newWorld(t, 1, cfg)
	w.now = time.Date(2026, 11, 30, 12, 0, 6, 0, time.UTC)
	for _, s := range old {
		addr, err := actors.ParseAddr(s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		st := &stored{header: s.Header, rows: map[string][]byte{}}
		for k, v := range s.Rows {
			st.rows[k] = []byte(v)
		}
		w.stored[addr] = st
	}
	pool := w.actor(actors.AdmissionAddr("lean")).(*admission.Actor)
	queue, _ := pool.Queue()
	if !slices.Equal(pool.Admitted(), []string{"a", "b"}) || !slices.Equal(queue, []string{"c", "d"}) {
		t.Fatalf("loaded admitted %v queue %v, want [a b] [c d]", pool.Admitted(), queue)
	}
	c := w.actor(actors.RunAddr("c")).(*run.Actor)
	w.advance(20 * time.Second) // c's keep-alive: it asks once, is answered, falls silent
	if w.status("c") != actors.StatusQueued || !c.Wake().After(w.now.Add(10*time.Minute)) {
		t.Fatalf("old waiter: %s, wakes at %s (now %s)", w.status("c"), c.Wake(), w.now)
	}
	w.perform(w.apply(actors.RunAddr("a"), actors.RunCancel{Exec: "a", Reason: "test"}))
	w.drain()
	if !slices.Contains(pool.Admitted(), "c") || w.status("c") == actors.StatusQueued {
		t.Fatalf("after a's release: admitted %v, c %s", pool.Admitted(), w.status("c"))
	}
}

// TestWaitersCostThePoolNothing: 300 runs wait behind a pool of one slot for ten
// virtual minutes. Each sends its pool one request and, when its turn comes, one
// acceptance; nothing else (issue 15: each used to heartbeat every 15 s, 40 messages a
// waiter here, O(waiters) messages a second to one single-threaded object forever).
// FAILS with the run's quiet-waiter guards (in alarm and Wake) removed: the world's
// invariant catches the first heartbeat of a waiter (checked by removing them).
func TestWaitersCostThePoolNothing(t *testing.T) {
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 1
	w := newWorld(t, 1, cfg)
	const n = 300
	for i := range n {
		w.start(fmt.Sprintf("w%03d", i), "lean", fmt.Sprintf("sb%03d", i), time.Time{})
	}
	w.drain()
	w.advance(10 * time.Minute)
	if w.fromWaiters > n+10 {
		t.Fatalf("%d waiters sent their pool %d messages in 10 minutes, want about one each", n, w.fromWaiters)
	}
	t.Logf("%d waiters, %d messages to the pool in 10 virtual minutes", n, w.fromWaiters)
}
