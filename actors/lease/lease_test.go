package lease_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/actortest"
	"github.com/flare-dispatch/flare-dispatch/actors/lease"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const sb = "sb-1"

type step struct {
	at time.Duration
	m  actors.Message
}

func apply(a *lease.Actor, steps ...step) {
	for _, s := range steps {
		a.Apply(t0.Add(s.at), s.m)
	}
}

func acq(exec string, ticket int) actors.LeaseAcquire {
	return actors.LeaseAcquire{Exec: exec, Ticket: ticket}
}
func rel(exec string, ticket int) actors.LeaseRelease {
	return actors.LeaseRelease{Exec: exec, Ticket: ticket}
}
func beat(exec string, ticket int) actors.LeaseHeartbeat {
	return actors.LeaseHeartbeat{Exec: exec, Ticket: ticket}
}
func granted(exec string, ticket int) actors.LeaseGranted {
	return actors.LeaseGranted{Exec: exec, Ticket: ticket, Sandbox: sb}
}
func waiting(exec, holder string) actors.LeaseWaiting {
	return actors.LeaseWaiting{Exec: exec, Holder: holder}
}
func released(exec string, ticket int) actors.LeaseReleased {
	return actors.LeaseReleased{Exec: exec, Ticket: ticket}
}

func sameSends(t *testing.T, fx []actors.Effect, want ...actors.Message) {
	t.Helper()
	if got := actortest.Sent(fx); !reflect.DeepEqual(got, want) {
		t.Errorf("sent\n got %#v\nwant %#v", got, want)
	}
}

// TestReleasedTicketMemory pins the lease's memory of released tickets: an acquire or
// heartbeat of a ticket the run already released was in flight (or crossed the run's
// own release) and must not take the sandbox, join its queue or draw an answer. The
// acquire cases FAIL when the wasReleased guard of LeaseAcquire is removed from Apply
// (the run holds or waits for the sandbox again), the heartbeat case when the guard of
// LeaseHeartbeat is (it draws LeaseUnknown, which makes a live run acquire again);
// checked by deleting each guard in turn. The rest pin the guard's bounds.
func TestReleasedTicketMemory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   []step
		late    actors.Message
		want    []actors.Message
		holder  string
		waiters bool
	}{
		{name: "acquire that crossed its own release",
			setup: []step{{0, rel("a", 0)}}, late: acq("a", 0)},
		{name: "acquire after holding and releasing",
			setup: []step{{0, acq("a", 0)}, {time.Second, rel("a", 0)}}, late: acq("a", 0)},
		{name: "acquire while another holds: no waiter added",
			setup: []step{{0, acq("b", 0)}, {time.Second, rel("a", 0)}}, late: acq("a", 0), holder: "b"},
		{name: "acquire of a ticket older than the released one",
			setup: []step{{0, acq("a", 1)}, {time.Second, rel("a", 1)}}, late: acq("a", 0)},
		{name: "heartbeat after release",
			setup: []step{{0, acq("a", 0)}, {time.Second, rel("a", 0)}}, late: beat("a", 0)},
		{name: "a newer ticket is granted",
			setup: []step{{0, acq("a", 0)}, {time.Second, rel("a", 0)}}, late: acq("a", 1),
			want: []actors.Message{granted("a", 1)}, holder: "a"},
		{name: "another execution is granted",
			setup: []step{{0, acq("a", 0)}, {time.Second, rel("a", 0)}}, late: acq("b", 0),
			want: []actors.Message{granted("b", 0)}, holder: "b"},
		{name: "a late release of an older ticket does not lower the memory",
			setup: []step{{0, rel("a", 2)}, {time.Second, rel("a", 1)}}, late: acq("a", 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := lease.New(sb, lease.DefaultConfig())
			apply(a, tc.setup...)
			sameSends(t, a.Apply(t0.Add(2*time.Second), tc.late), tc.want...)
			if a.Holder() != tc.holder {
				t.Errorf("holder %q, want %q", a.Holder(), tc.holder)
			}
			if a.Idle() != (tc.holder == "") {
				t.Errorf("idle %v with holder %q: a waiter was added", a.Idle(), tc.holder)
			}
		})
	}
}

// TestReleasedTicketMemoryIsStoredAndForgotten: the memory is part of the stored state
// and bounded: a sweep after Forget drops it.
func TestReleasedTicketMemoryIsStoredAndForgotten(t *testing.T) {
	c := lease.DefaultConfig()
	a := lease.New(sb, c)
	apply(a, step{0, acq("a", 0)}, step{time.Second, rel("a", 0)})
	a = actortest.Reload(t, &actortest.Store{}, a, lease.New(sb, c))
	sameSends(t, a.Apply(t0.Add(2*time.Second), acq("a", 0)))
	if a.Holder() != "" {
		t.Fatalf("after a restart a late acquire took the sandbox")
	}
	a.Apply(t0.Add(time.Second+c.Forget), actors.Alarm{})
	sameSends(t, a.Apply(t0.Add(time.Second+c.Forget), acq("a", 0)), granted("a", 0))
}

// TestEarlierTicketThanTheLiveOne: acquires and heartbeats of an older ticket than the
// holder's or waiter's are late and answered with nothing.
func TestEarlierTicketThanTheLiveOne(t *testing.T) {
	a := lease.New(sb, lease.DefaultConfig())
	apply(a, step{0, acq("a", 2)}, step{0, acq("b", 2)})
	for _, m := range []actors.Message{acq("a", 1), beat("a", 1), acq("b", 1), beat("b", 1), rel("a", 1), rel("b", 1)} {
		fx := a.Apply(t0.Add(time.Second), m)
		if _, isRel := m.(actors.LeaseRelease); isRel {
			// An older release is acknowledged but frees nothing.
			sameSends(t, fx, released(m.(actors.LeaseRelease).Exec, 1))
		} else {
			sameSends(t, fx)
		}
	}
	if a.Holder() != "a" {
		t.Fatalf("holder %q", a.Holder())
	}
	// b still waits: releasing a promotes it.
	sameSends(t, a.Apply(t0.Add(2*time.Second), rel("a", 2)), granted("b", 2), released("a", 2))
}

func TestOneHolderWaitersInArrivalOrder(t *testing.T) {
	a := lease.New(sb, lease.DefaultConfig())
	sameSends(t, a.Apply(t0, acq("a", 0)), granted("a", 0))
	sameSends(t, a.Apply(t0.Add(time.Second), acq("b", 0)), waiting("b", "a"))
	sameSends(t, a.Apply(t0.Add(2*time.Second), acq("c", 0)), waiting("c", "a"))
	// Repeats are idempotent and answered with the truth.
	sameSends(t, a.Apply(t0.Add(3*time.Second), acq("a", 0)), granted("a", 0))
	sameSends(t, a.Apply(t0.Add(3*time.Second), acq("c", 0)), waiting("c", "a"))
	sameSends(t, a.Apply(t0.Add(3*time.Second), beat("a", 0)), granted("a", 0))
	sameSends(t, a.Apply(t0.Add(3*time.Second), beat("b", 0)), waiting("b", "a"))
	sameSends(t, a.Apply(t0.Add(3*time.Second), beat("x", 0)), actors.LeaseUnknown{Exec: "x"})
	// The holder releases: the first waiter gets the sandbox.
	sameSends(t, a.Apply(t0.Add(4*time.Second), rel("a", 0)), granted("b", 0), released("a", 0))
	// A waiter that leaves is acknowledged; the next release leaves the lease free.
	sameSends(t, a.Apply(t0.Add(5*time.Second), rel("c", 0)), released("c", 0))
	sameSends(t, a.Apply(t0.Add(6*time.Second), rel("b", 0)), released("b", 0))
	if a.Holder() != "" || !a.Idle() || !a.Wake().IsZero() {
		t.Fatalf("holder %q idle %v wake %s", a.Holder(), a.Idle(), a.Wake())
	}
}

// TestExpiry checks each limit at its bound. a holds from 0, b waits from 1s.
func TestExpiry(t *testing.T) {
	c := lease.DefaultConfig()
	short := c
	short.MaxWait = 5 * time.Minute // shorter than the TTL, so the busy case is reachable
	for _, tc := range []struct {
		name    string
		cfg     lease.Config
		steps   []step
		sweepAt time.Duration
		want    []actors.Message
		holder  string
	}{
		{name: "holder just inside its TTL", cfg: c, sweepAt: c.TTL - time.Millisecond,
			steps: beatsEvery(c.TTL, time.Minute, "b"), holder: "a"},
		{name: "silent holder reclaimed at its TTL, waiter promoted", cfg: c, sweepAt: c.TTL,
			steps: beatsEvery(c.TTL, time.Minute, "b"), want: []actors.Message{granted("b", 0)}, holder: "b"},
		{name: "silent waiter dropped at its TTL", cfg: c, sweepAt: time.Second + c.WaiterTTL, holder: "a"},
		{name: "waiter told ContainerBusy at MaxWait", cfg: short, sweepAt: time.Second + short.MaxWait,
			steps: beatsEvery(short.MaxWait, time.Minute, "a", "b"),
			want:  []actors.Message{actors.LeaseBusy{Exec: "b", Sandbox: sb, Holder: "a", Waited: short.MaxWait}}, holder: "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := lease.New(sb, tc.cfg)
			apply(a, step{0, acq("a", 0)}, step{time.Second, acq("b", 0)})
			apply(a, tc.steps...)
			sameSends(t, a.Apply(t0.Add(tc.sweepAt), actors.Alarm{}), tc.want...)
			if a.Holder() != tc.holder {
				t.Errorf("holder %q, want %q", a.Holder(), tc.holder)
			}
			// Whether b still waits: releasing the holder promotes it or frees the lease.
			fx := a.Apply(t0.Add(tc.sweepAt), rel(a.Holder(), 0))
			stillWaits := len(actortest.Only[actors.Send](fx)) == 2
			wantWaits := tc.name == "holder just inside its TTL"
			if stillWaits != wantWaits {
				t.Errorf("b still waiting %v, want %v (%v)", stillWaits, wantWaits, actortest.Sent(fx))
			}
		})
	}
}

func beatsEvery(end, period time.Duration, execs ...string) []step {
	var out []step
	for at := period; at < end; at += period {
		for _, e := range execs {
			out = append(out, step{at, beat(e, 0)})
		}
	}
	return out
}

func TestWakeAndRecover(t *testing.T) {
	c := lease.DefaultConfig()
	a := lease.New(sb, c)
	a.Apply(t0, acq("a", 0))
	if want := t0.Add(c.Tick); !a.Wake().Equal(want) {
		t.Fatalf("wake %s, want %s", a.Wake(), want)
	}
	// A restart just before the TTL: the holder gets a fresh heartbeat and the truth.
	sameSends(t, a.Apply(t0.Add(c.TTL-time.Second), actors.Recover{}), granted("a", 0))
	sameSends(t, a.Apply(t0.Add(c.TTL+time.Second), actors.Alarm{}))
	if a.Holder() != "a" {
		t.Fatalf("holder reclaimed despite Recover")
	}
	a.Apply(t0.Add(c.TTL+time.Second), rel("a", 0))
	if !a.Wake().IsZero() {
		t.Fatalf("free lease wakes at %s", a.Wake())
	}
}

func TestStateSurvivesReload(t *testing.T) {
	c := lease.DefaultConfig()
	a := lease.New(sb, c)
	apply(a, step{0, acq("a", 0)}, step{time.Second, acq("b", 1)}, step{2 * time.Second, acq("c", 0)}, step{3 * time.Second, rel("c", 0)})
	b := actortest.Reload(t, &actortest.Store{}, a, lease.New(sb, c))
	for _, m := range []actors.Message{acq("c", 0), beat("b", 1), rel("a", 0), actors.Alarm{}} {
		now := t0.Add(4 * time.Second)
		if x, y := a.Apply(now, m), b.Apply(now, m); !reflect.DeepEqual(x, y) {
			t.Fatalf("%T: live %v, reloaded %v", m, x, y)
		}
	}
	if a.Holder() != "b" || b.Holder() != "b" {
		t.Fatalf("holders %q %q, want b", a.Holder(), b.Holder())
	}
}
