package admission_test

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/actortest"
	"github.com/flare-dispatch/flare-dispatch/actors/admission"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// cfg is a small pool with the contract's timings.
func cfg(capacity int) admission.Config {
	c := admission.DefaultConfig()
	c.Cap = capacity
	return c
}

// step is one message applied at t0+at.
type step struct {
	at time.Duration
	m  actors.Message
}

// apply runs steps on a and returns the effects of the last one.
func apply(a *admission.Actor, steps ...step) []actors.Effect {
	var fx []actors.Effect
	for _, s := range steps {
		fx = a.Apply(t0.Add(s.at), s.m)
	}
	return fx
}

func req(exec string, ticket int) actors.AdmitRequest {
	return actors.AdmitRequest{Exec: exec, Ticket: ticket}
}
func rel(exec string, ticket int) actors.AdmitRelease {
	return actors.AdmitRelease{Exec: exec, Ticket: ticket}
}
func beat(exec string, ticket int) actors.AdmitHeartbeat {
	return actors.AdmitHeartbeat{Exec: exec, Ticket: ticket}
}
func granted(exec string, ticket int) actors.AdmitGranted {
	return actors.AdmitGranted{Exec: exec, Ticket: ticket}
}
func offered(exec string, ticket int) actors.AdmitGranted {
	return actors.AdmitGranted{Exec: exec, Ticket: ticket, Confirm: true}
}
func accept(exec string, ticket int) actors.AdmitAccept {
	return actors.AdmitAccept{Exec: exec, Ticket: ticket}
}

func queued(exec string, ticket, pos, busy, capacity int, queuedAt time.Duration) actors.AdmitQueued {
	return actors.AdmitQueued{Exec: exec, Ticket: ticket, Queue: actors.QueueInfo{
		Position: pos, Busy: busy, Cap: capacity, Deadline: t0.Add(queuedAt + admission.DefaultConfig().MaxWait)}}
}

func sameSends(t *testing.T, fx []actors.Effect, want ...actors.Message) {
	t.Helper()
	for _, e := range fx {
		if s, ok := e.(actors.Send); ok && s.To.Kind != actors.KindRun {
			t.Errorf("send to %s: admission only answers runs", s.To)
		}
	}
	if got := actortest.Sent(fx); !reflect.DeepEqual(got, want) {
		t.Errorf("sent\n got %#v\nwant %#v", got, want)
	}
}

// TestReleasedTicketMemory pins the pool's memory of released tickets: a request or
// heartbeat of a ticket the run already released is a message that was in flight (or a
// run's request that crossed its own release) and must not take a slot or draw an
// answer. The first four cases FAIL when the wasReleased guard of their message is
// removed from Apply (checked by deleting each guard in turn: the request cases then
// admit the run again, the heartbeat case answers AdmitUnknown, which makes the run
// ask again); the rest pin the guard's bounds.
func TestReleasedTicketMemory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   []step
		late    actors.Message
		want    []actors.Message
		holders []string
	}{
		{name: "request that crossed its own release",
			setup: []step{{0, rel("a", 0)}}, late: req("a", 0)},
		{name: "request after the slot was held and released",
			setup: []step{{0, req("a", 0)}, {time.Second, rel("a", 0)}}, late: req("a", 0)},
		{name: "request of a ticket older than the released one",
			setup: []step{{0, req("a", 1)}, {time.Second, rel("a", 1)}}, late: req("a", 0)},
		{name: "heartbeat after release",
			setup: []step{{0, req("a", 0)}, {time.Second, rel("a", 0)}}, late: beat("a", 0)},
		{name: "a newer ticket is admitted",
			setup: []step{{0, req("a", 0)}, {time.Second, rel("a", 0)}}, late: req("a", 1),
			want: []actors.Message{offered("a", 1)}, holders: []string{"a"}},
		{name: "another execution is admitted",
			setup: []step{{0, req("a", 0)}, {time.Second, rel("a", 0)}}, late: req("b", 0),
			want: []actors.Message{offered("b", 0)}, holders: []string{"b"}},
		{name: "a late release of an older ticket does not lower the memory",
			setup: []step{{0, rel("a", 2)}, {time.Second, rel("a", 1)}}, late: req("a", 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := admission.New("lean", cfg(1))
			apply(a, tc.setup...)
			fx := a.Apply(t0.Add(2*time.Second), tc.late)
			sameSends(t, fx, tc.want...)
			if got := a.Holders(); !slices.Equal(got, tc.holders) {
				t.Errorf("holders %v, want %v", got, tc.holders)
			}
		})
	}
}

// TestReleasedTicketMemoryIsStoredAndForgotten: the memory survives a restart (it is a
// row of its own) and is bounded: after Forget a sweep drops it.
func TestReleasedTicketMemoryIsStoredAndForgotten(t *testing.T) {
	c := cfg(1)
	a := admission.New("lean", c)
	st := &actortest.Store{}
	apply(a, step{0, req("a", 0)}, step{time.Second, rel("a", 0)})
	a = actortest.Reload(t, st, a, admission.New("lean", c))
	if fx := a.Apply(t0.Add(2*time.Second), req("a", 0)); len(fx) != 0 || len(a.Holders()) != 0 {
		t.Fatalf("after a restart a late request was admitted: %v", fx)
	}
	if len(st.Rows) != 1 {
		t.Fatalf("stored rows %v, want only the released ticket", st.Rows)
	}
	// Forget elapses: the sweep drops the row, and the ticket is no longer refused.
	a.Apply(t0.Add(time.Second+c.Forget), actors.Alarm{})
	st.Save(t, a)
	if len(st.Rows) != 0 {
		t.Fatalf("rows %v after Forget, want none", st.Rows)
	}
	sameSends(t, a.Apply(t0.Add(time.Second+c.Forget), req("a", 0)), offered("a", 0))
}

// TestEarlierTicketThanTheEntry: a request or heartbeat of an older ticket than the
// run's live entry is late and answered with nothing; a newer one replaces the entry.
func TestEarlierTicketThanTheEntry(t *testing.T) {
	a := admission.New("lean", cfg(1))
	apply(a, step{0, req("a", 1)})
	sameSends(t, a.Apply(t0, req("a", 0)))
	sameSends(t, a.Apply(t0, beat("a", 0)))
	if !slices.Equal(a.Holders(), []string{"a"}) {
		t.Fatalf("holders %v", a.Holders())
	}
	// A heartbeat of a newer ticket: the run moved on, its old entry is stale and goes.
	sameSends(t, a.Apply(t0, beat("a", 2)), actors.AdmitUnknown{Exec: "a", Ticket: 2})
	if len(a.Holders()) != 0 || !a.Idle() {
		t.Fatalf("stale entry kept: holders %v", a.Holders())
	}
}

func TestFIFOUnderTheCap(t *testing.T) {
	a := admission.New("lean", cfg(2))
	sameSends(t, a.Apply(t0, req("a", 0)), offered("a", 0))
	sameSends(t, a.Apply(t0.Add(1*time.Second), req("b", 0)), offered("b", 0))
	sameSends(t, a.Apply(t0.Add(1*time.Second), accept("b", 0)), granted("b", 0))
	sameSends(t, a.Apply(t0.Add(2*time.Second), req("c", 0)), queued("c", 0, 0, 2, 2, 2*time.Second))
	sameSends(t, a.Apply(t0.Add(3*time.Second), req("d", 0)), queued("d", 0, 1, 2, 2, 3*time.Second))
	// A fan-out child with its parent's order key goes ahead of both waiters.
	child := actors.AdmitRequest{Exec: "a.1", OrderKey: t0}
	sameSends(t, a.Apply(t0.Add(4*time.Second), child), queued("a.1", 0, 0, 2, 2, 4*time.Second))
	if got, _ := a.Queue(); !slices.Equal(got, []string{"a.1", "c", "d"}) {
		t.Fatalf("queue %v", got)
	}
	// A repeated request is answered with the truth and changes nothing.
	sameSends(t, a.Apply(t0.Add(5*time.Second), req("b", 0)), granted("b", 0))
	sameSends(t, a.Apply(t0.Add(5*time.Second), req("a", 0)), offered("a", 0))
	sameSends(t, a.Apply(t0.Add(5*time.Second), req("d", 0)), queued("d", 0, 2, 2, 2, 3*time.Second))
	// A holder releases: the head of the queue is offered the slot at once, the
	// release acknowledged.
	sameSends(t, a.Apply(t0.Add(6*time.Second), rel("a", 0)), offered("a.1", 0), actors.AdmitReleased{Exec: "a"})
	if got := a.Holders(); !slices.Equal(got, []string{"a.1", "b"}) {
		t.Fatalf("holders %v", got)
	}
	// The next sweep reports the positions that changed since the last report: c is
	// at 0 again, as last told; d moved from 2 to 1.
	sameSends(t, a.Apply(t0.Add(7*time.Second), actors.Alarm{}), queued("d", 0, 1, 2, 2, 3*time.Second))
	sameSends(t, a.Apply(t0.Add(8*time.Second), actors.Alarm{}))
	// A waiter that leaves the queue is acknowledged and holds nothing.
	sameSends(t, a.Apply(t0.Add(9*time.Second), rel("c", 0)), actors.AdmitReleased{Exec: "c"})
	if got, _ := a.Queue(); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("queue %v", got)
	}
}

func TestHeartbeatsAnswerTheTruth(t *testing.T) {
	a := admission.New("lean", cfg(1))
	apply(a, step{0, req("a", 0)}, step{time.Second, req("b", 0)})
	sameSends(t, a.Apply(t0.Add(2*time.Second), beat("a", 0)), offered("a", 0))
	sameSends(t, a.Apply(t0.Add(2*time.Second), accept("a", 0)), granted("a", 0))
	sameSends(t, a.Apply(t0.Add(2*time.Second), beat("a", 0)), granted("a", 0))
	sameSends(t, a.Apply(t0.Add(2*time.Second), beat("b", 0)), queued("b", 0, 0, 1, 1, time.Second))
	sameSends(t, a.Apply(t0.Add(2*time.Second), beat("x", 3)), actors.AdmitUnknown{Exec: "x", Ticket: 3})
}

// TestExpiry checks each limit at its bound: one millisecond before, the entry stays;
// at the limit, the sweep acts.
func TestExpiry(t *testing.T) {
	c := admission.DefaultConfig()
	c.Cap = 1
	for _, tc := range []struct {
		name    string
		steps   []step // a requests at 0 and accepts; b requests at 1s and waits
		sweepAt time.Duration
		want    []actors.Message
		holders []string
		queue   []string
	}{
		{name: "holder just inside its TTL", sweepAt: c.HolderTTL - time.Millisecond,
			holders: []string{"a"}, queue: []string{"b"}},
		{name: "silent holder reclaimed at its TTL, waiter offered the slot", sweepAt: c.HolderTTL,
			want: []actors.Message{offered("b", 0)}, holders: []string{"b"}},
		{name: "a silent waiter keeps its place: it is checked when its turn comes",
			sweepAt: c.MaxWait, holders: []string{"a"}, queue: []string{"b"},
			steps: beats(c.MaxWait, 60*time.Second, "a")},
		{name: "waiter times out at MaxWait", sweepAt: time.Second + c.MaxWait,
			steps:   beats(c.MaxWait, 60*time.Second, "a"),
			want:    []actors.Message{actors.AdmitTimedOut{Exec: "b", QueuedFor: c.MaxWait, Position: 0, Busy: 1, Cap: 1}},
			holders: []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := admission.New("lean", c)
			apply(a, step{0, req("a", 0)}, step{0, accept("a", 0)}, step{time.Second, req("b", 0)})
			apply(a, tc.steps...)
			sameSends(t, a.Apply(t0.Add(tc.sweepAt), actors.Alarm{}), tc.want...)
			if got := a.Holders(); !slices.Equal(got, tc.holders) {
				t.Errorf("holders %v, want %v", got, tc.holders)
			}
			if got, _ := a.Queue(); !slices.Equal(got, tc.queue) {
				t.Errorf("queue %v, want %v", got, tc.queue)
			}
		})
	}
}

// TestOfferMustBeAccepted pins the grant/accept protocol: an offer holds the slot for
// AckTTL and is re-sent on each sweep meanwhile; not accepted by then, it is withdrawn
// (the run is told AdmitUnknown) and the next waiter is offered the slot. An
// acceptance admits (answered with the confirmation); an acceptance of a withdrawn
// offer is answered AdmitUnknown and takes nothing. The withdrawal case FAILS without
// the AckTTL case of the sweep (a dead waiter would hold the slot until its MaxWait).
func TestOfferMustBeAccepted(t *testing.T) {
	c := admission.DefaultConfig()
	c.Cap = 1
	a := admission.New("lean", c)
	sameSends(t, a.Apply(t0, req("a", 0)), offered("a", 0))
	apply(a, step{time.Second, req("b", 0)})
	sameSends(t, a.Apply(t0.Add(c.Tick), actors.Alarm{}), offered("a", 0)) // re-sent
	sameSends(t, a.Apply(t0.Add(c.AckTTL-time.Millisecond), actors.Alarm{}), offered("a", 0))
	if got := a.Offers(); !got["a"].Equal(t0) || len(got) != 1 {
		t.Fatalf("offers %v", got)
	}
	sameSends(t, a.Apply(t0.Add(c.AckTTL), actors.Alarm{}), actors.AdmitUnknown{Exec: "a"}, offered("b", 0))
	if got := a.Holders(); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("holders %v after the withdrawal", got)
	}
	sameSends(t, a.Apply(t0.Add(c.AckTTL+time.Second), accept("a", 0)), actors.AdmitUnknown{Exec: "a"})
	sameSends(t, a.Apply(t0.Add(c.AckTTL+time.Second), accept("b", 0)), granted("b", 0))
	sameSends(t, a.Apply(t0.Add(c.AckTTL+time.Second), accept("b", 0)), granted("b", 0)) // idempotent
	if got := a.Admitted(); !slices.Equal(got, []string{"b"}) || len(a.Offers()) != 0 {
		t.Fatalf("admitted %v offers %v", got, a.Offers())
	}
	// Accepted, the holder is no longer re-offered: the sweep says nothing.
	sameSends(t, a.Apply(t0.Add(c.AckTTL+c.Tick*2), actors.Alarm{}))
}

// TestDeepPositionsAreReportedCoarsely: the first exactPositions waiters hear every
// change of their position; deeper ones when it moved by at least 1/8 since the last
// report, so a waiter hears O(log depth) reports while the queue drains.
func TestDeepPositionsAreReportedCoarsely(t *testing.T) {
	c := admission.DefaultConfig()
	c.Cap = 1
	a := admission.New("lean", c)
	const depth = 200
	for i := range depth + 1 {
		apply(a, step{time.Duration(i) * time.Millisecond, req(fmt.Sprintf("e%03d", i), 0)})
	}
	reports := map[string]int{}
	at := time.Second
	for i := range depth {
		exec := fmt.Sprintf("e%03d", i)
		apply(a, step{at, accept(exec, 0)}, step{at, rel(exec, 0)})
		for _, m := range actortest.Sent(a.Apply(t0.Add(at), actors.Alarm{})) {
			if q, ok := m.(actors.AdmitQueued); ok {
				reports[q.Exec]++
			}
		}
		at += c.Tick
	}
	if n := reports["e200"]; n > 32+20 || n < 32 {
		t.Fatalf("the last waiter heard %d reports while 199 ahead of it left, want 32 + a few", n)
	}
	if n := reports["e010"]; n != 9 {
		t.Fatalf("a waiter at 9 heard %d reports, want one per change (9)", n)
	}
}

// TestWakeRunsTheSweepOnlyWhileOccupied: the alarm ticks while anyone is in the pool
// and stops when it is empty (an idle pool costs nothing).
func TestWakeRunsTheSweepOnlyWhileOccupied(t *testing.T) {
	c := cfg(1)
	a := admission.New("lean", c)
	if !a.Wake().IsZero() || !a.Idle() {
		t.Fatalf("new pool wakes at %s", a.Wake())
	}
	a.Apply(t0, req("a", 0))
	if want := t0.Add(c.Tick); !a.Wake().Equal(want) || a.Idle() {
		t.Fatalf("wake %s, want %s", a.Wake(), want)
	}
	a.Apply(t0.Add(time.Second), beat("a", 0)) // a wake in the future is kept
	if want := t0.Add(c.Tick); !a.Wake().Equal(want) {
		t.Fatalf("wake moved to %s", a.Wake())
	}
	a.Apply(t0.Add(c.Tick), actors.Alarm{})
	if want := t0.Add(2 * c.Tick); !a.Wake().Equal(want) {
		t.Fatalf("wake after the sweep %s, want %s", a.Wake(), want)
	}
	a.Apply(t0.Add(c.Tick+time.Second), rel("a", 0))
	if !a.Wake().IsZero() || !a.Idle() {
		t.Fatalf("empty pool still wakes at %s", a.Wake())
	}
}

// TestRecoverRefreshesAndResends: after a host outage every holder gets a fresh
// heartbeat and every offer a fresh deadline (a long outage must not reclaim runs that
// could not speak), and both are told the truth again; waiters are told nothing (a run
// that did not hear its position asks again on its own: O(holders), not O(waiters)).
func TestRecoverRefreshesAndResends(t *testing.T) {
	c := cfg(2)
	a := admission.New("lean", c)
	apply(a, step{0, req("a", 0)}, step{0, accept("a", 0)}, step{time.Second, req("b", 0)}, step{2 * time.Second, req("c", 0)})
	out := a.Apply(t0.Add(c.HolderTTL-time.Second), actors.Recover{})
	sameSends(t, out, granted("a", 0), offered("b", 0))
	sameSends(t, a.Apply(t0.Add(c.HolderTTL+c.Tick), actors.Alarm{}), offered("b", 0))
	if !slices.Equal(a.Holders(), []string{"a", "b"}) {
		t.Fatalf("holder reclaimed despite Recover: %v", a.Holders())
	}
}

// TestStateSurvivesReload: what a host stores (header plus dirty rows) is enough to
// carry on exactly where the pool was.
func TestStateSurvivesReload(t *testing.T) {
	c := cfg(2)
	a := admission.New("lean", c)
	st := &actortest.Store{}
	apply(a, step{0, req("a", 0)}, step{time.Second, req("b", 0)}, step{2 * time.Second, req("c", 0)},
		step{3 * time.Second, actors.AdmitRequest{Exec: "d", OrderKey: t0.Add(-time.Hour)}}, step{4 * time.Second, rel("a", 0)})
	b := actortest.Reload(t, st, a, admission.New("lean", c))
	if !slices.Equal(a.Holders(), b.Holders()) || !a.Wake().Equal(b.Wake()) {
		t.Fatalf("holders %v wake %s, reloaded %v %s", a.Holders(), a.Wake(), b.Holders(), b.Wake())
	}
	qa, ka := a.Queue()
	qb, kb := b.Queue()
	if !slices.Equal(qa, qb) || !slices.EqualFunc(ka, kb, time.Time.Equal) {
		t.Fatalf("queue %v, reloaded %v", qa, qb)
	}
	for _, m := range []actors.Message{rel("d", 0), req("a", 0), actors.Alarm{}} {
		now := t0.Add(5 * time.Second)
		if x, y := a.Apply(now, m), b.Apply(now, m); !reflect.DeepEqual(x, y) {
			t.Fatalf("%T: live %v, reloaded %v", m, x, y)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	a := admission.New("lean", admission.Config{HolderTTL: time.Minute, AckTTL: time.Minute, MaxWait: time.Minute, Tick: time.Second})
	if a.Cap() != 16 {
		t.Fatalf("cap %d, want the contract's 16", a.Cap())
	}
}

// beats heartbeats every exec each period up to end.
func beats(end, period time.Duration, execs ...string) []step {
	var out []step
	for at := period; at < end; at += period {
		for _, e := range execs {
			out = append(out, step{at, beat(e, 0)})
		}
	}
	return out
}
