package run_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/actortest"
	"github.com/flare-dispatch/flare-dispatch/actors/run"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const exec = "e1"

var (
	cfg       = run.DefaultConfig()
	admission = actors.AdmissionAddr("lean")
	lease     = actors.LeaseAddr("sb")
	start     = actors.RunStart{Exec: exec, Run: "hello", Pool: "lean", Sandbox: "sb", MaxDuration: time.Hour}
)

// clock is a virtual clock: each call to next returns a later instant.
type clock struct{ now time.Time }

func (c *clock) next() time.Time { c.now = c.now.Add(time.Second); return c.now }

// fixture is a run driven to some state, and the clock it was driven with.
type fixture struct {
	a *run.Actor
	c *clock
}

func (f *fixture) apply(ms ...actors.Message) []actors.Effect {
	var fx []actors.Effect
	for _, m := range ms {
		fx = f.a.Apply(f.c.next(), m)
	}
	return fx
}

func newRun(t *testing.T, ms ...actors.Message) *fixture {
	t.Helper()
	f := &fixture{a: run.New(exec, cfg), c: &clock{now: t0}}
	f.apply(start)
	f.apply(ms...)
	return f
}

// The states the guard table starts from (slices.Concat: no state shares another's
// backing array).
var (
	admitted = []actors.Message{actors.AdmitGranted{Exec: exec}}
	running  = slices.Concat(admitted, []actors.Message{actors.LeaseGranted{Exec: exec, Sandbox: "sb"}, actors.AgentHeartbeat{Exec: exec, Attempt: 1}})
	// queued1 suspends a running run until t0+10s, acknowledges both releases and lets
	// the alarms pass that time: the run queues again under ticket 1.
	queued1 = slices.Concat(running, []actors.Message{
		actors.AgentSuspend{Exec: exec, Attempt: 1, Until: t0.Add(10 * time.Second)},
		actors.AdmitReleased{Exec: exec}, actors.LeaseReleased{Exec: exec},
		actors.Alarm{}, actors.Alarm{}, actors.Alarm{}, actors.Alarm{}, actors.Alarm{}})
	admitted1 = slices.Concat(queued1, []actors.Message{actors.AdmitGranted{Exec: exec, Ticket: 1}})
	// cancelled1 is cancelled while admitted under ticket 1: it owes both releases.
	cancelled1 = slices.Concat(admitted1, []actors.Message{actors.RunCancel{Exec: exec, Reason: "stop"}})
)

func clone(ms []actors.Message) []actors.Message { return append([]actors.Message(nil), ms...) }

// TestStaleTicketIsIgnored pins the run's stale-ticket filter (the ticketOf check at
// the top of Apply): an admission or lease answer about an earlier ticket is about a
// request the run has since released, and must change nothing. Every stale case FAILS
// with that filter removed (checked by deleting it: the run is admitted, leased, failed,
// re-queued or takes a late acknowledgement for its current release); each case's
// current-ticket twin shows the same message does act.
func TestStaleTicketIsIgnored(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state []actors.Message
		msg   func(ticket int) actors.Message
	}{
		{"AdmitGranted while queued again", queued1, func(n int) actors.Message { return actors.AdmitGranted{Exec: exec, Ticket: n} }},
		{"AdmitQueued while queued again", queued1, func(n int) actors.Message {
			return actors.AdmitQueued{Exec: exec, Ticket: n, Queue: actors.QueueInfo{Position: 3, Busy: 1, Cap: 1}}
		}},
		{"AdmitTimedOut while queued again", queued1, func(n int) actors.Message {
			return actors.AdmitTimedOut{Exec: exec, Ticket: n, QueuedFor: time.Minute}
		}},
		{"AdmitUnknown while queued again", queued1, func(n int) actors.Message { return actors.AdmitUnknown{Exec: exec, Ticket: n} }},
		{"LeaseGranted while admitted again", admitted1, func(n int) actors.Message {
			return actors.LeaseGranted{Exec: exec, Ticket: n, Sandbox: "sb"}
		}},
		{"LeaseBusy while admitted again", admitted1, func(n int) actors.Message {
			return actors.LeaseBusy{Exec: exec, Ticket: n, Sandbox: "sb", Holder: "x"}
		}},
		{"LeaseUnknown while admitted again", admitted1, func(n int) actors.Message { return actors.LeaseUnknown{Exec: exec, Ticket: n} }},
		{"AdmitReleased while a later release is owed", cancelled1, func(n int) actors.Message {
			return actors.AdmitReleased{Exec: exec, Ticket: n}
		}},
		{"LeaseReleased while a later release is owed", cancelled1, func(n int) actors.Message {
			return actors.LeaseReleased{Exec: exec, Ticket: n}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRun(t, clone(tc.state)...)
			if f.a.Ticket() != 1 {
				t.Fatalf("setup: ticket %d status %s, want ticket 1", f.a.Ticket(), f.a.Status())
			}
			f.a.Dirty()
			before, _ := f.a.Header()
			if fx := f.apply(tc.msg(0)); len(fx) != 0 {
				t.Errorf("stale answer drew effects %v", fx)
			}
			after, _ := f.a.Header()
			if h, rows := f.a.Dirty(); h || len(rows) > 0 || !bytes.Equal(before, after) {
				t.Errorf("stale answer changed the state:\n%s\n%s", before, after)
			}
			// The same answer about the current ticket acts.
			g := newRun(t, clone(tc.state)...)
			g.a.Dirty()
			fx := g.apply(tc.msg(1))
			if h, _ := g.a.Dirty(); len(fx) == 0 && !h {
				t.Errorf("the current ticket's answer did nothing either: the case pins nothing")
			}
		})
	}
}

func TestStartQueuesAndIsIdempotent(t *testing.T) {
	a := run.New(exec, cfg)
	fx := a.Apply(t0, start)
	want := []actors.Effect{
		actors.Progress{Exec: exec, Status: actors.StatusQueued, At: t0},
		actors.Send{To: admission, Msg: actors.AdmitRequest{Exec: exec, OrderKey: t0}},
		actors.Reply{Msg: actors.RunStatus{Exec: exec, Status: actors.StatusQueued, Created: true}},
	}
	if !reflect.DeepEqual(fx, want) {
		t.Fatalf("start:\n got %#v\nwant %#v", fx, want)
	}
	fx = a.Apply(t0.Add(time.Second), start)
	if want := []actors.Effect{actors.Reply{Msg: actors.RunStatus{Exec: exec, Status: actors.StatusQueued}}}; !reflect.DeepEqual(fx, want) {
		t.Fatalf("second start: %#v", fx)
	}
	// A child keeps its parent's place in the FIFO.
	c := run.New("c", cfg)
	c.Apply(t0.Add(time.Minute), actors.RunStart{Exec: "c", Pool: "lean", Parent: exec, OrderKey: t0})
	if !c.OrderKey().Equal(t0) {
		t.Fatalf("child order key %s", c.OrderKey())
	}
}

// TestLifecycle walks one execution through every state and checks the effects of each
// transition.
func TestLifecycle(t *testing.T) {
	f := newRun(t)
	type want struct {
		status actors.Status
		kinds  []string // effect kinds, in order
	}
	for i, s := range []struct {
		m actors.Message
		w want
	}{
		{actors.AdmitQueued{Exec: exec, Queue: actors.QueueInfo{Position: 2, Busy: 1, Cap: 1}}, want{actors.StatusQueued, []string{"Progress"}}},
		{actors.AdmitQueued{Exec: exec, Queue: actors.QueueInfo{Position: 2, Busy: 1, Cap: 1}}, want{actors.StatusQueued, nil}}, // unchanged: no progress
		{actors.AdmitGranted{Exec: exec}, want{actors.StatusAdmitted, []string{"Progress", "Send:lease.acquire"}}},
		{actors.LeaseWaiting{Exec: exec, Holder: "x"}, want{actors.StatusAdmitted, nil}},
		{actors.LeaseGranted{Exec: exec, Sandbox: "sb"}, want{actors.StatusLeased, []string{"Progress", "StartAgent"}}},
		{actors.AgentHeartbeat{Exec: exec, Attempt: 1}, want{actors.StatusRunning, []string{"Progress", "Reply:agent.ack"}}},
		{actors.StepBegin{Exec: exec, Attempt: 1, Step: "build"}, want{actors.StatusRunning, []string{"StepProgress", "Reply:step.decision"}}},
		{actors.StepEnd{Exec: exec, Attempt: 1, Step: "build", Result: json.RawMessage(`1`)}, want{actors.StatusRunning, []string{"StepProgress", "Reply:agent.ack"}}},
		{actors.AgentExit{Exec: exec, Attempt: 1, Output: json.RawMessage(`{"ok":true}`)}, want{actors.StatusSuccess,
			[]string{"StopAgent", "Send:admission.release", "Send:lease.release", "Progress", "Reply:agent.ack"}}},
		{actors.AdmitReleased{Exec: exec}, want{actors.StatusSuccess, nil}},
		{actors.LeaseReleased{Exec: exec}, want{actors.StatusSuccess, nil}},
	} {
		if got := kinds(f.apply(s.m)); !reflect.DeepEqual(got, s.w.kinds) || f.a.Status() != s.w.status {
			t.Fatalf("step %d %s: status %s effects %v, want %s %v", i, s.m.Type(), f.a.Status(), got, s.w.status, s.w.kinds)
		}
	}
	if !f.a.Idle() || !f.a.Wake().IsZero() {
		t.Fatalf("finished and acknowledged run: idle %v wake %s", f.a.Idle(), f.a.Wake())
	}
}

func kinds(fx []actors.Effect) []string {
	var out []string
	for _, e := range fx {
		switch e := e.(type) {
		case actors.Send:
			out = append(out, "Send:"+e.Msg.Type())
		case actors.Reply:
			out = append(out, "Reply:"+e.Msg.Type())
		default:
			out = append(out, reflect.TypeOf(e).Name())
		}
	}
	return out
}

// TestEndings: every way an execution ends, with its typed failure and the releases it
// owes (a queued run holds no lease, so it releases only its slot).
func TestEndings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		state  []actors.Message
		end    actors.Message
		status actors.Status
		tag    string
		kinds  []string
	}{
		{"cancelled while queued", nil, actors.RunCancel{Exec: exec}, actors.StatusCancelled, actors.TagCancelled,
			[]string{"Send:admission.release", "Progress", "Reply:run.status"}},
		{"cancelled while running", running, actors.RunCancel{Exec: exec}, actors.StatusCancelled, actors.TagCancelled,
			[]string{"StopAgent", "Send:admission.release", "Send:lease.release", "Progress", "Reply:run.status"}},
		{"admission timed out", nil, actors.AdmitTimedOut{Exec: exec, QueuedFor: 20 * time.Minute, Busy: 1, Cap: 1}, actors.StatusFailure, actors.TagAdmissionTimedOut,
			[]string{"Send:admission.release", "Progress"}},
		{"sandbox busy", admitted, actors.LeaseBusy{Exec: exec, Sandbox: "sb", Holder: "x", Waited: 10 * time.Minute}, actors.StatusFailure, actors.TagContainerBusy,
			[]string{"Send:admission.release", "Send:lease.release", "Progress"}},
		{"agent failed", running, actors.AgentExit{Exec: exec, Attempt: 1, Failure: &actors.Failure{Tag: "ExecFailed", Message: "exit 1"}}, actors.StatusFailure, "ExecFailed",
			[]string{"StopAgent", "Send:admission.release", "Send:lease.release", "Progress", "Reply:agent.ack"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRun(t, clone(tc.state)...)
			got := kinds(f.apply(tc.end))
			if f.a.Status() != tc.status || f.a.Failure() == nil || f.a.Failure().Tag != tc.tag || !reflect.DeepEqual(got, tc.kinds) {
				t.Fatalf("status %s failure %v effects %v, want %s %s %v", f.a.Status(), f.a.Failure(), got, tc.status, tc.tag, tc.kinds)
			}
			// Terminal: a second ending changes nothing, and agent messages are told to stop.
			if fx := f.apply(actors.RunCancel{Exec: exec}); len(fx) != 1 {
				t.Errorf("cancel after the end: %v", fx)
			}
			fx := f.apply(actors.AgentHeartbeat{Exec: exec, Attempt: 1})
			if ack := fx[0].(actors.Reply).Msg.(actors.AgentAck); !ack.Stop {
				t.Errorf("agent not told to stop: %+v", ack)
			}
		})
	}
}

// TestAgentLiveness checks the liveness limits at their bounds: a booting agent gets
// AgentBoot, a running one AgentDead; a lost agent is restarted as a new attempt until
// MaxAttempts, then the run fails with AgentLost.
func TestAgentLiveness(t *testing.T) {
	f := newRun(t, admitted[0], actors.LeaseGranted{Exec: exec, Sandbox: "sb"})
	leasedAt := f.c.now
	alarm := func(at time.Time) []string { f.c.now = at; return kinds(f.a.Apply(at, actors.Alarm{})) }
	if got := alarm(leasedAt.Add(cfg.AgentBoot - time.Millisecond)); slices.Contains(got, "StopAgent") {
		t.Fatalf("agent stopped before its boot limit: %v", got)
	}
	if got := alarm(leasedAt.Add(cfg.AgentBoot)); !slices.Contains(got, "StopAgent") || !slices.Contains(got, "StartAgent") || f.a.Attempt() != 2 {
		t.Fatalf("at the boot limit: %v attempt %d", got, f.a.Attempt())
	}
	// The old attempt is superseded; the new one beats and runs.
	ack := f.apply(actors.AgentHeartbeat{Exec: exec, Attempt: 1})[0].(actors.Reply).Msg.(actors.AgentAck)
	if !ack.Superseded {
		t.Fatalf("attempt 1 not superseded: %+v", ack)
	}
	f.apply(actors.AgentHeartbeat{Exec: exec, Attempt: 2})
	beat := f.c.now
	if got := alarm(beat.Add(cfg.AgentDead - time.Millisecond)); slices.Contains(got, "StopAgent") {
		t.Fatalf("running agent stopped before AgentDead: %v", got)
	}
	alarm(beat.Add(cfg.AgentDead))
	if f.a.Attempt() != 3 || f.a.Status() != actors.StatusLeased {
		t.Fatalf("attempt %d status %s after a silent running agent", f.a.Attempt(), f.a.Status())
	}
	// The third attempt never beats: MaxAttempts (3) is spent.
	got := alarm(f.c.now.Add(cfg.AgentBoot))
	if f.a.Status() != actors.StatusFailure || f.a.Failure().Tag != actors.TagAgentLost || slices.Contains(got, "StartAgent") {
		t.Fatalf("status %s failure %v effects %v, want AgentLost", f.a.Status(), f.a.Failure(), got)
	}
}

// TestDeadline: the run times out at its MaxDuration, not a millisecond before.
func TestDeadline(t *testing.T) {
	f := newRun(t, running...)
	deadline := t0.Add(time.Second + start.MaxDuration) // started at t0+1s
	for at := f.c.now; at.Before(deadline); at = at.Add(5 * time.Second) {
		f.a.Apply(at, actors.AgentHeartbeat{Exec: exec, Attempt: 1})
	}
	f.a.Apply(deadline.Add(-time.Millisecond), actors.Alarm{})
	if f.a.Status() != actors.StatusRunning {
		t.Fatalf("status %s before the deadline", f.a.Status())
	}
	got := kinds(f.a.Apply(deadline, actors.Alarm{}))
	if f.a.Status() != actors.StatusTimedOut || f.a.Failure().Tag != actors.TagRunTimedOut || !slices.Contains(got, "StopAgent") {
		t.Fatalf("status %s effects %v", f.a.Status(), got)
	}
}

// TestReleasesRepeatUntilAcknowledged: an ended run repeats its releases on every
// keep-alive until each is acknowledged, then goes idle.
func TestReleasesRepeatUntilAcknowledged(t *testing.T) {
	f := newRun(t, append(clone(running), actors.RunCancel{Exec: exec})...)
	ended := f.c.now
	if want := ended.Add(cfg.KeepAlive); !f.a.Wake().Equal(want) || f.a.Idle() {
		t.Fatalf("wake %s idle %v, want the keep-alive %s", f.a.Wake(), f.a.Idle(), want)
	}
	if got := kinds(f.a.Apply(ended.Add(cfg.KeepAlive), actors.Alarm{})); !reflect.DeepEqual(got, []string{"Send:admission.release", "Send:lease.release"}) {
		t.Fatalf("keep-alive %v", got)
	}
	f.apply(actors.AdmitReleased{Exec: exec})
	if got := kinds(f.a.Apply(ended.Add(2*cfg.KeepAlive), actors.Alarm{})); !reflect.DeepEqual(got, []string{"Send:lease.release"}) {
		t.Fatalf("keep-alive after the slot ack %v", got)
	}
	f.apply(actors.LeaseReleased{Exec: exec})
	if !f.a.Idle() || !f.a.Wake().IsZero() {
		t.Fatalf("idle %v wake %s after both acks", f.a.Idle(), f.a.Wake())
	}
	// A grant that crossed the release is given back.
	if got := kinds(f.apply(actors.AdmitGranted{Exec: exec})); !reflect.DeepEqual(got, []string{"Send:admission.release"}) {
		t.Fatalf("late grant %v", got)
	}
	if slot, _ := f.a.Owes(); !slot {
		t.Fatalf("the given-back slot is not owed")
	}
}

// TestKeepAliveHeartbeatsWhatTheRunHolds: a run that holds a slot heartbeats admission
// (and, once admitted, its lease); a queued run says only what the pool has not heard:
// its request until answered, its acceptance until confirmed, and nothing at all while
// it waits its turn (issue 15: 2,000 waiters heartbeating one pool every 15 s were
// ~130 messages/s to a single-threaded object). The "heard" case FAILS with the
// quietWaiter test removed from alarm (it heartbeats again), and with pollAt removed
// from Wake (its alarm fires every keep-alive).
func TestKeepAliveHeartbeatsWhatTheRunHolds(t *testing.T) {
	q := actors.QueueInfo{Position: 3, Busy: 16, Cap: 16, Deadline: t0.Add(20 * time.Minute)}
	heard := []actors.Message{actors.AdmitQueued{Exec: exec, Queue: q}}
	offered := []actors.Message{actors.AdmitGranted{Exec: exec, Confirm: true}}
	for _, tc := range []struct {
		name  string
		state []actors.Message
		want  []string
		wake  time.Time // zero: the next keep-alive
	}{
		{"request not answered", nil, []string{"Send:admission.request"}, time.Time{}},
		{"heard: silent until past its wait's deadline", heard, nil, q.Deadline.Add(cfg.KeepAlive)},
		{"offer accepted, not confirmed", slices.Concat(heard, offered), []string{"Send:admission.accept"}, time.Time{}},
		{"admitted", admitted, []string{"Send:admission.heartbeat", "Send:lease.heartbeat"}, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRun(t, clone(tc.state)...)
			wake := tc.wake
			if wake.IsZero() {
				wake = t0.Add(time.Second + cfg.KeepAlive)
			}
			if !f.a.Wake().Equal(wake) {
				t.Errorf("wake %s, want %s", f.a.Wake(), wake)
			}
			if got := kinds(f.a.Apply(t0.Add(time.Second+cfg.KeepAlive), actors.Alarm{})); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("keep-alive %v, want %v", got, tc.want)
			}
		})
	}
}

// TestOfferIsAcceptedBeforeAnythingStarts: an offer makes the run accept and nothing
// else (no lease, no agent, still queued); the confirmation admits it; a repeated
// offer to a run that holds the slot is accepted again (its acceptance was lost).
func TestOfferIsAcceptedBeforeAnythingStarts(t *testing.T) {
	f := newRun(t)
	if got := kinds(f.apply(actors.AdmitGranted{Exec: exec, Confirm: true})); !reflect.DeepEqual(got, []string{"Send:admission.accept"}) {
		t.Fatalf("offer: %v", got)
	}
	if f.a.Status() != actors.StatusQueued {
		t.Fatalf("status %s after an offer, want queued", f.a.Status())
	}
	if got := kinds(f.apply(actors.AdmitGranted{Exec: exec})); !reflect.DeepEqual(got, []string{"Progress", "Send:lease.acquire"}) || f.a.Status() != actors.StatusAdmitted {
		t.Fatalf("confirmation: %v, status %s", got, f.a.Status())
	}
	if got := kinds(f.apply(actors.AdmitGranted{Exec: exec, Confirm: true})); !reflect.DeepEqual(got, []string{"Send:admission.accept"}) {
		t.Fatalf("offer to a holder: %v", got)
	}
}

// TestLostTimeOutIsLearnedByPolling: a waiter whose AdmitTimedOut was lost polls once
// past its wait's deadline, and the pool's AdmitUnknown then ends it with
// AdmissionTimedOut; before the deadline, AdmitUnknown makes it ask again instead.
func TestLostTimeOutIsLearnedByPolling(t *testing.T) {
	q := actors.QueueInfo{Position: 40, Busy: 16, Cap: 16, Deadline: t0.Add(20 * time.Minute)}
	f := newRun(t, actors.AdmitQueued{Exec: exec, Queue: q})
	if got := kinds(f.apply(actors.AdmitUnknown{Exec: exec})); !reflect.DeepEqual(got, []string{"Send:admission.request"}) || f.a.Status() != actors.StatusQueued {
		t.Fatalf("unknown before the deadline: %v, status %s", got, f.a.Status())
	}
	f.apply(actors.AdmitQueued{Exec: exec, Queue: q})
	poll := f.a.Wake()
	if !poll.Equal(q.Deadline.Add(cfg.KeepAlive)) {
		t.Fatalf("poll at %s, want %s", poll, q.Deadline.Add(cfg.KeepAlive))
	}
	if got := kinds(f.a.Apply(poll, actors.Alarm{})); !reflect.DeepEqual(got, []string{"Send:admission.heartbeat"}) {
		t.Fatalf("poll: %v", got)
	}
	f.a.Apply(poll.Add(time.Millisecond), actors.AdmitUnknown{Exec: exec})
	if f.a.Status() != actors.StatusFailure || f.a.Failure() == nil || f.a.Failure().Tag != actors.TagAdmissionTimedOut {
		t.Fatalf("after the poll: %s %+v", f.a.Status(), f.a.Failure())
	}
}

// TestSuspendAndResume: a suspended run gives back slot and lease, waits, and queues
// again at its original place under a new ticket only after both releases are
// acknowledged; its next attempt replays the journal.
func TestSuspendAndResume(t *testing.T) {
	f := newRun(t, append(clone(running), actors.StepEnd{Exec: exec, Attempt: 1, Step: "plan", Result: json.RawMessage(`"p"`)})...)
	until := f.c.now.Add(time.Minute)
	got := kinds(f.apply(actors.AgentSuspend{Exec: exec, Attempt: 1, Until: until}))
	if f.a.Status() != actors.StatusWaiting || !reflect.DeepEqual(got, []string{"StopAgent", "Send:admission.release", "Send:lease.release", "Progress", "Reply:agent.ack"}) {
		t.Fatalf("suspend: %s %v", f.a.Status(), got)
	}
	f.a.Apply(until, actors.Alarm{}) // time is up, but the releases are not acknowledged
	if f.a.Status() != actors.StatusWaiting {
		t.Fatalf("resumed before its releases were acknowledged")
	}
	f.c.now = until
	f.apply(actors.AdmitReleased{Exec: exec})
	got = kinds(f.apply(actors.LeaseReleased{Exec: exec}))
	if f.a.Status() != actors.StatusQueued || f.a.Ticket() != 1 || !reflect.DeepEqual(got, []string{"Progress", "Send:admission.request"}) || !f.a.OrderKey().Equal(t0.Add(time.Second)) {
		t.Fatalf("resume: %s ticket %d %v order %s", f.a.Status(), f.a.Ticket(), got, f.a.OrderKey())
	}
	f.apply(actors.AdmitGranted{Exec: exec, Ticket: 1}, actors.LeaseGranted{Exec: exec, Ticket: 1, Sandbox: "sb"})
	dec := f.apply(actors.StepBegin{Exec: exec, Attempt: 2, Step: "plan"})
	if d := dec[len(dec)-1].(actors.Reply).Msg.(actors.StepDecision); !d.Done || string(d.Result) != `"p"` {
		t.Fatalf("journal not replayed: %+v", d)
	}
}

// TestWaitForChildrenAndEvents: a parent resumes when its last child ends; a run
// waiting for an event resumes when it arrives, and the event is recorded once.
func TestWaitForChildrenAndEvents(t *testing.T) {
	acks := []actors.Message{actors.AdmitReleased{Exec: exec}, actors.LeaseReleased{Exec: exec}}
	f := newRun(t, append(clone(running), actors.AgentSuspend{Exec: exec, Attempt: 1, Children: []string{"c1", "c2"}})...)
	f.apply(acks...)
	f.apply(actors.ChildDone{Exec: exec, Child: "c1", Status: actors.StatusSuccess})
	if f.a.Status() != actors.StatusWaiting {
		t.Fatalf("resumed with a child still running")
	}
	f.apply(actors.ChildDone{Exec: exec, Child: "c2", Status: actors.StatusFailure})
	if f.a.Status() != actors.StatusQueued {
		t.Fatalf("status %s after the last child", f.a.Status())
	}

	g := newRun(t, append(clone(running), actors.AgentSuspend{Exec: exec, Attempt: 1, Event: "approve"})...)
	g.apply(acks...)
	ev := actors.RunEvent{Exec: exec, Kind: "approve", Payload: json.RawMessage(`{"by":"x"}`)}
	first := g.apply(ev)
	ack := actortest.Only[actors.Reply](first)[0].Msg.(actors.RunEventAck)
	if !ack.Delivered || g.a.Status() != actors.StatusQueued {
		t.Fatalf("event: %+v status %s", ack, g.a.Status())
	}
	if s, ok := g.a.Step(actors.EventStep("approve")); !ok || string(s.Result) != `{"by":"x"}` {
		t.Fatalf("event not in the journal: %+v", s)
	}
	again := g.apply(ev)
	if ack := again[0].(actors.Reply).Msg.(actors.RunEventAck); !ack.Duplicate || len(again) != 1 {
		t.Fatalf("second event: %v", again)
	}
}

func TestUnstartedExecutionAnswers(t *testing.T) {
	a := run.New(exec, cfg)
	for _, tc := range []struct {
		m    actors.Message
		want actors.Message
	}{
		{actors.RunQuery{Exec: exec}, actors.RunStatus{Exec: exec}},
		{actors.AgentHeartbeat{Exec: exec, Attempt: 1}, actors.AgentAck{Exec: exec, Stop: true, Reason: "unknown execution"}},
		{actors.StepBegin{Exec: exec, Attempt: 1, Step: "s"}, actors.StepDecision{Exec: exec, Step: "s", Stop: true}},
		{actors.RunEvent{Exec: exec, Kind: "k"}, actors.RunEventAck{Exec: exec}},
		{actors.AdmitGranted{Exec: exec}, nil},
		{actors.Alarm{}, nil},
	} {
		fx := a.Apply(t0, tc.m)
		var got actors.Message
		if len(fx) == 1 {
			got = fx[0].(actors.Reply).Msg
		}
		if !reflect.DeepEqual(got, tc.want) || len(fx) > 1 {
			t.Errorf("%s: %v, want %v", tc.m.Type(), fx, tc.want)
		}
	}
	if !a.Idle() || !a.Wake().IsZero() {
		t.Fatalf("unstarted run is not idle")
	}
}

// TestStateSurvivesReload: header plus journal rows are enough to carry on; Recover then
// re-sends what a restart may have lost and grants the agent a fresh grace period.
func TestStateSurvivesReload(t *testing.T) {
	f := newRun(t, append(clone(running), actors.StepEnd{Exec: exec, Attempt: 1, Step: "a", Result: json.RawMessage(`1`)})...)
	st := &actortest.Store{}
	b := actortest.Reload(t, st, f.a, run.New(exec, cfg))
	if b.Status() != actors.StatusRunning || b.Attempt() != 1 {
		t.Fatalf("reloaded %s attempt %d", b.Status(), b.Attempt())
	}
	if s, ok := b.Step("a"); !ok || s.Status != actors.StepSuccess {
		t.Fatalf("journal lost: %+v", s)
	}
	later := f.c.now.Add(time.Hour / 2)
	got := kinds(b.Apply(later, actors.Recover{}))
	want := []string{"Progress", "StepProgress", "Send:admission.heartbeat", "Send:lease.heartbeat"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("recover %v, want %v", got, want)
	}
	if got := kinds(b.Apply(later.Add(cfg.AgentDead-time.Millisecond), actors.Alarm{})); slices.Contains(got, "StopAgent") {
		t.Fatalf("no grace after Recover: %v", got)
	}
}

// TestRefusedStartEndsTheRunPromptly (issue 15): a start the platform refused reaches
// the run at once and is tried again after 2, 4 and 8 s (new attempts, not counted as
// lost agents); the fourth refusal fails the run with SandboxStartFailed naming the
// cause, and its slot and lease are released, all within 15 s instead of the 90 s boot
// grace times three attempts. Late reports (an earlier attempt's, or one after the
// agent spoke) change nothing. FAILS without the AgentStartFailed case of Apply (the
// run then waits for its boot grace).
func TestRefusedStartEndsTheRunPromptly(t *testing.T) {
	f := newRun(t, actors.AdmitGranted{Exec: exec}, actors.LeaseGranted{Exec: exec, Sandbox: "sb"})
	leasedAt := f.c.now
	refuse := func(attempt int) []string {
		return kinds(f.a.Apply(f.c.now, actors.AgentStartFailed{Exec: exec, Attempt: attempt, Cause: "Containers have not been enabled"}))
	}
	for i, backoff := range []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second} {
		attempt := f.a.Attempt()
		if got := refuse(attempt); len(got) != 0 {
			t.Fatalf("refusal %d: %v", i+1, got)
		}
		if got := refuse(attempt); len(got) != 0 { // a duplicate report
			t.Fatalf("duplicate refusal %d: %v", i+1, got)
		}
		retry := f.c.now.Add(backoff)
		if w := f.a.Wake(); w.After(retry) {
			t.Fatalf("refusal %d: wake %s, after the retry at %s", i+1, w, retry)
		}
		if got := kinds(f.a.Apply(retry.Add(-time.Millisecond), actors.Alarm{})); slices.Contains(got, "StartAgent") {
			t.Fatalf("retry %d before its backoff: %v", i+1, got)
		}
		f.c.now = retry
		if got := kinds(f.a.Apply(f.c.now, actors.Alarm{})); !slices.Contains(got, "StartAgent") || f.a.Attempt() != attempt+1 {
			t.Fatalf("retry %d: %v, attempt %d", i+1, got, f.a.Attempt())
		}
		if got := refuse(attempt); len(got) != 0 { // the earlier attempt's, late
			t.Fatalf("late refusal of attempt %d: %v", attempt, got)
		}
	}
	got := refuse(f.a.Attempt())
	if want := []string{"StopAgent", "Send:admission.release", "Send:lease.release", "Progress"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("last refusal: %v, want %v", got, want)
	}
	if fl := f.a.Failure(); f.a.Status() != actors.StatusFailure || fl == nil || fl.Tag != actors.TagSandboxStartFailed ||
		!bytes.Contains(fl.Detail, []byte(`"cause":"Containers have not been enabled"`)) || !bytes.Contains(fl.Detail, []byte(`"attempts":4`)) {
		t.Fatalf("ended %s %+v", f.a.Status(), f.a.Failure())
	}
	if took := f.c.now.Sub(leasedAt); took >= 15*time.Second {
		t.Fatalf("the run failed %s after its lease, want within 15 s", took)
	}
}

// TestRefusalAfterTheAgentSpokeIsLate: once the agent has beaten, a start failure
// report is about a start that in fact succeeded, and changes nothing.
func TestRefusalAfterTheAgentSpokeIsLate(t *testing.T) {
	f := newRun(t, clone(running)...)
	if got := kinds(f.apply(actors.AgentStartFailed{Exec: exec, Attempt: 1, Cause: "x"})); len(got) != 0 || f.a.Status() != actors.StatusRunning {
		t.Fatalf("%v, status %s", got, f.a.Status())
	}
}
