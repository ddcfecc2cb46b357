package host

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ergo.services/ergo/gen"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// These tests use real time, not testing/synctest: an ergo node starts goroutines
// (a signal watcher among them) that never end, which a synctest bubble refuses.

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, path string, fx EffectHandler, opt Options) *Host {
	t.Helper()
	if opt.Logger == nil {
		opt.Logger = quiet
	}
	h, err := Open(context.Background(), path, newToy, fx, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Stop(context.Background()) })
	return h
}

func call(t testing.TB, h *Host, to actors.Addr, m actors.Message) actors.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := h.Call(ctx, to, m)
	if err != nil {
		t.Fatalf("call %s on %s: %v", m.Type(), to, err)
	}
	return r
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill ends a host the way a crash would as far as storage can tell: nothing queued
// is committed and no effect of it is performed.
func kill(h *Host) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = h.Stop(ctx)
}

// pids lists the node's processes.
func pids(t testing.TB, h *Host) map[gen.PID]bool {
	t.Helper()
	l, err := h.node.ProcessList()
	if err != nil {
		t.Fatal(err)
	}
	m := map[gen.PID]bool{}
	for _, p := range l {
		m[p] = true
	}
	return m
}

// processes counts the node's processes. (node.Info would race with ergo's cron.)
func processes(h *Host) int64 {
	l, err := h.node.ProcessList()
	if err != nil {
		return -1
	}
	return int64(len(l))
}

func TestCallReturnsTheReducersReply(t *testing.T) {
	h := open(t, filepath.Join(t.TempDir(), "a.db"), &effects{}, Options{})
	for i := 1; i <= 3; i++ {
		if r := call(t, h, toyAddr("a"), tPush{fmt.Sprint(i)}); r != (tCount{i}) {
			t.Fatalf("push %d: got %#v", i, r)
		}
	}
	_, err := h.Call(context.Background(), toyAddr("a"), tSilent{})
	if !errors.Is(err, ErrNoReply) {
		t.Fatalf("silent reducer: got %v, want ErrNoReply", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Call(ctx, toyAddr("a"), tGet{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: got %v", err)
	}
}

func TestMessagesKeepArrivalOrderPerSender(t *testing.T) {
	h := open(t, filepath.Join(t.TempDir(), "a.db"), &effects{}, Options{})
	const senders, each = 4, 300
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				if err := h.Send(toyAddr("q"), tPush{fmt.Sprintf("%d-%04d", g, i)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	// A second path to the same actor: another actor forwarding, in order too.
	for i := range each {
		if err := h.Send(toyAddr("fwd"), tForward{To: toyAddr("q"), Item: fmt.Sprintf("f-%04d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	eventually(t, "every push applied", func() bool {
		return call(t, h, toyAddr("q"), tGet{}).(tSnap).H.N == (senders+1)*each
	})
	last := map[string]string{}
	for _, it := range call(t, h, toyAddr("q"), tGet{}).(tSnap).Items {
		var g, n string
		fmt.Sscanf(it, "%1s-%s", &g, &n)
		if n <= last[g] {
			t.Fatalf("sender %s: %s arrived after %s", g, n, last[g])
		}
		last[g] = n
	}
}

// TestEffectsFollowPersist checks, when each effect arrives, that the state that
// produced it is already readable from another connection.
func TestEffectsFollowPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var checked, violations atomic.Int64
	fx := &effects{check: func(from actors.Addr, e actors.Effect) {
		p, ok := e.(actors.Progress)
		if !ok || p.Status != "" {
			return
		}
		var rows int
		if err := db.QueryRow(`SELECT count(*) FROM actor_rows WHERE kind = ? AND key = ?`, from.Kind, from.Key).Scan(&rows); err != nil {
			t.Error(err)
		}
		if rows < p.Attempt {
			violations.Add(1)
		}
		checked.Add(1)
	}}
	h := open(t, path, fx, Options{})
	const actorsN, pushes = 10, 40
	for i := range pushes {
		for a := range actorsN {
			if err := h.Send(toyAddr(fmt.Sprint(a)), tPush{fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, "every effect", func() bool { return checked.Load() == actorsN*pushes })
	if v := violations.Load(); v > 0 {
		t.Fatalf("%d effects arrived before their state was stored", v)
	}
}

func TestReopenAfterKillRecoversBusyActors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	h := open(t, path, &effects{}, Options{})
	for _, it := range []string{"x", "y", "z"} {
		call(t, h, toyAddr("busy"), tPush{it})
		call(t, h, toyAddr("idle"), tPush{it})
	}
	call(t, h, toyAddr("busy"), tBusy{true})
	call(t, h, toyAddr("busy"), tPop{})
	for range 100 { // in flight when the host dies: some may be lost, none half-written
		_ = h.Send(toyAddr("busy"), tPush{"late"})
	}
	kill(h)

	fx := &effects{}
	h = open(t, path, fx, Options{})
	eventually(t, "Recover of the busy actor", func() bool { return len(fx.progress("busy", "recover")) == 1 })
	busy := call(t, h, toyAddr("busy"), tGet{}).(tSnap)
	if busy.H.Recovered != 1 || len(busy.Items) < 2 || busy.Items[0] != "y" || busy.Items[1] != "z" {
		t.Fatalf("busy actor after restart: %+v", busy)
	}
	for _, it := range busy.Items[2:] {
		if it != "late" {
			t.Fatalf("busy actor after restart: %+v", busy)
		}
	}
	if got := len(busy.Items) - 2; busy.H.N != 3+got {
		t.Fatalf("header says %d pushed, rows hold %d: %+v", busy.H.N, 3+got, busy)
	}
	idle := call(t, h, toyAddr("idle"), tGet{}).(tSnap)
	if idle.H.Recovered != 0 || len(idle.Items) != 3 {
		t.Fatalf("idle actor after restart: %+v (an idle actor without wake is not recovered)", idle)
	}
}

func TestAlarmsFireAndReplaceEachOther(t *testing.T) {
	fx := &effects{}
	h := open(t, filepath.Join(t.TempDir(), "a.db"), fx, Options{})
	call(t, h, toyAddr("a"), tWake{50 * time.Millisecond})
	eventually(t, "alarm", func() bool { return len(fx.progress("a", "alarm")) == 1 })

	call(t, h, toyAddr("b"), tWake{50 * time.Millisecond}) // cleared before due
	call(t, h, toyAddr("b"), tWake{0})
	call(t, h, toyAddr("c"), tWake{time.Hour}) // replaced by an earlier one
	call(t, h, toyAddr("c"), tWake{50 * time.Millisecond})
	eventually(t, "replaced alarm", func() bool { return len(fx.progress("c", "alarm")) == 1 })
	// A cleared alarm shows only by not firing. The sentinel d is due 250 ms after b
	// would have been; the router takes the timers' messages in due order, and a Call
	// to b reaches b's process after anything the router handed it before. So once d
	// has fired, b's state counts every alarm b will ever get.
	call(t, h, toyAddr("d"), tWake{300 * time.Millisecond})
	eventually(t, "sentinel alarm", func() bool { return len(fx.progress("d", "alarm")) == 1 })
	if b := call(t, h, toyAddr("b"), tGet{}).(tSnap); b.H.Alarms != 0 {
		t.Fatalf("cleared alarm fired %d times", b.H.Alarms)
	}
	if n := len(fx.progress("b", "alarm")); n != 0 {
		t.Fatalf("cleared alarm fired %d times", n)
	}
	if n := len(fx.progress("a", "alarm")) + len(fx.progress("c", "alarm")); n != 2 {
		t.Fatalf("alarms fired %d times, want 2", n)
	}
}

func TestAlarmsSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.db")
	h := open(t, path, &effects{}, Options{})
	call(t, h, toyAddr("soon"), tWake{10 * time.Minute})
	call(t, h, toyAddr("later"), tWake{time.Hour + 500*time.Millisecond})
	if err := h.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	// The host comes back an hour later: "soon" is overdue, "later" nearly due.
	fx := &effects{}
	start := time.Now()
	h = open(t, path, fx, Options{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	eventually(t, "overdue alarm", func() bool { return len(fx.progress("soon", "alarm")) == 1 })
	if d := time.Since(start); d > 5*time.Second { // not the ten minutes it was set for
		t.Errorf("overdue alarm took %v after Open", d)
	}
	if len(fx.progress("later", "alarm")) != 0 {
		t.Error("future alarm fired at once")
	}
	eventually(t, "future alarm", func() bool { return len(fx.progress("later", "alarm")) == 1 })
	for _, k := range []string{"soon", "later"} {
		if s := call(t, h, toyAddr(k), tGet{}).(tSnap); s.H.Recovered != 1 || s.H.Alarms != 1 {
			t.Fatalf("%s: %+v", k, s.H)
		}
	}
}

func TestPassivatedActorsComeBackWithTheirState(t *testing.T) {
	fx := &effects{}
	h := open(t, filepath.Join(t.TempDir(), "a.db"), fx, Options{})
	base := processes(h)
	for i := range 50 {
		a := toyAddr(fmt.Sprint(i))
		call(t, h, a, tPush{"one"})
		call(t, h, a, tPush{"two"})
	}
	call(t, h, toyAddr("0"), tWake{100 * time.Millisecond}) // idle, with an alarm
	eventually(t, "passivation", func() bool { return processes(h) == base })
	eventually(t, "alarm of a passivated actor", func() bool { return len(fx.progress("0", "alarm")) == 1 })
	for i := range 50 {
		s := call(t, h, toyAddr(fmt.Sprint(i)), tGet{}).(tSnap)
		if len(s.Items) != 2 || s.Items[1] != "two" {
			t.Fatalf("actor %d after passivation: %+v", i, s)
		}
	}

	// With KeepIdle the processes stay.
	h2 := open(t, filepath.Join(t.TempDir(), "b.db"), fx, Options{KeepIdle: true})
	base = processes(h2)
	for i := range 10 {
		call(t, h2, toyAddr(fmt.Sprint(i)), tPush{"one"})
	}
	// Passivation shows only by not happening. The router acts on a committed record
	// before the Call's reply is sent (Host.dispatch), so a second round of Calls
	// reaches each actor after the router decided about the first: had it passivated
	// any, the second round would spawn a new process, with a PID never seen before.
	before := pids(t, h2)
	for i := range 10 {
		call(t, h2, toyAddr(fmt.Sprint(i)), tPush{"two"})
	}
	for pid := range pids(t, h2) {
		if !before[pid] {
			t.Fatalf("KeepIdle: process %s spawned again: an idle actor was passivated", pid)
		}
	}
	if n := processes(h2) - base; n != 10 {
		t.Fatalf("KeepIdle: %d processes, want 10", n)
	}
}

func TestPanickingReducerLosesOnlyItsMessage(t *testing.T) {
	h := open(t, filepath.Join(t.TempDir(), "a.db"), &effects{}, Options{})
	call(t, h, toyAddr("p"), tBusy{true})
	call(t, h, toyAddr("p"), tPush{"kept"})
	if _, err := h.Call(context.Background(), toyAddr("p"), tPanic{}); err == nil {
		t.Fatal("panic: no error")
	}
	s := call(t, h, toyAddr("p"), tGet{}).(tSnap)
	if len(s.Items) != 1 || s.Items[0] != "kept" || !s.H.Busy {
		t.Fatalf("after panic: %+v", s)
	}
}

func TestStopWithWorkInFlightReturns(t *testing.T) {
	h := open(t, filepath.Join(t.TempDir(), "a.db"), &effects{}, Options{})
	for i := range 50 { // ping-pong forever
		a, b := toyAddr(fmt.Sprint("ping", i)), toyAddr(fmt.Sprint("pong", i))
		if err := h.Send(a, tPing{Peer: b}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5000 {
		_ = h.Send(toyAddr(fmt.Sprint(i%200)), tPush{"x"})
	}
	calls := make(chan error, 20)
	for i := range 20 {
		go func() {
			_, err := h.Call(context.Background(), toyAddr(fmt.Sprint(i)), tGet{})
			calls <- err
		}()
	}
	// Stop while the work is being committed: wait until the first of it is.
	eventually(t, "work in flight", func() bool { return h.store.committed.Load() > 0 })
	start := time.Now()
	if err := h.Stop(context.Background()); err != nil { // the work never ends by itself
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Stop took %v", d)
	}
	t.Logf("Stop took %v", time.Since(start))
	for range 20 {
		select {
		case err := <-calls:
			if err != nil && !errors.Is(err, ErrStopped) {
				t.Fatalf("call during Stop: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a Call is still waiting after Stop")
		}
	}
	if err := h.Send(toyAddr("x"), tGet{}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Send after Stop: %v", err)
	}
	if err := h.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestSendAndCallKeepErgosError stops the ergo node underneath the host, as ergo's
// own SIGINT handler does: Send and Call report ErrStopped and keep ergo's cause.
func TestSendAndCallKeepErgosError(t *testing.T) {
	h := open(t, filepath.Join(t.TempDir(), "a.db"), nil, Options{})
	h.node.StopForce()
	if err := h.Send(toyAddr("x"), tGet{}); !errors.Is(err, ErrStopped) || !errors.Is(err, gen.ErrNodeTerminated) {
		t.Fatalf("Send = %v, want ErrStopped wrapping ergo's error", err)
	}
	if _, err := h.Call(context.Background(), toyAddr("x"), tGet{}); !errors.Is(err, ErrStopped) || !errors.Is(err, gen.ErrNodeTerminated) {
		t.Fatalf("Call = %v, want ErrStopped wrapping ergo's error", err)
	}
}
