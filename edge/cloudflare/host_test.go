package cloudflare

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/edge/effectqueue"
)

// memStorage is a Durable Object's storage in memory.
type memStorage struct {
	mu       sync.Mutex
	stored   *Stored
	alarm    time.Time
	saves    int
	alarmOps int
	failSave bool
}

func (s *memStorage) Load() (Stored, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stored == nil {
		return Stored{}, false, nil
	}
	c := *s.stored
	c.Header = append([]byte(nil), c.Header...)
	c.Rows = maps.Clone(c.Rows)
	return c, true, nil
}

func (s *memStorage) Save(c Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSave {
		return errors.New("disk full")
	}
	if s.stored == nil {
		s.stored = &Stored{Addr: c.Addr, Rows: map[string][]byte{}}
	}
	if c.Header != nil {
		s.stored.Header = append([]byte(nil), c.Header...)
	}
	for _, r := range c.Rows {
		if r.Value == nil {
			delete(s.stored.Rows, r.Key)
		} else {
			s.stored.Rows[r.Key] = append([]byte(nil), r.Value...)
		}
	}
	s.saves++
	return nil
}

func (s *memStorage) SetAlarm(t time.Time) func(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.alarm = t
	s.alarmOps++
	return func(context.Context) error { return nil }
}

func (s *memStorage) header(t *testing.T) toyHeader {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var h toyHeader
	if s.stored == nil {
		t.Fatal("nothing stored")
	}
	if err := json.Unmarshal(s.stored.Header, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// world routes sends between objects of one host, one object per address, as the
// Durable Object namespaces do.
type world struct {
	h      *Host
	mu     sync.Mutex
	stores map[actors.Addr]*memStorage
	keys   map[actors.Addr]string
	sent   []string
}

func newWorld(t *testing.T, f actors.Factory, fx Effects, now func() time.Time) *world {
	w := &world{stores: map[actors.Addr]*memStorage{}, keys: map[actors.Addr]string{}}
	w.h = NewHost(f, w, HostOptions{Effects: fx, Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return w
}

func (w *world) object(a actors.Addr) (string, *memStorage) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stores[a] == nil {
		w.stores[a] = &memStorage{}
		w.keys[a] = fmt.Sprintf("obj-%d", len(w.keys))
	}
	return w.keys[a], w.stores[a]
}

// restart forgets every object, as if the runtime died: storage stays.
func (w *world) restart() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for a, k := range w.keys {
		w.h.Free(k)
		w.keys[a] = k + "'"
	}
}

func (w *world) Send(_ context.Context, from, to actors.Addr, m actors.Message) error {
	w.mu.Lock()
	w.sent = append(w.sent, fmt.Sprintf("%s->%s %s", from, to, m.Type()))
	w.mu.Unlock()
	_, err := w.deliver(to, m)
	return err
}

func (w *world) deliver(to actors.Addr, m actors.Message) (actors.Message, error) {
	k, s := w.object(to)
	// Messages cross JavaScript as JSON: make the test do the same.
	b, err := actors.Marshal(m)
	if err != nil {
		return nil, err
	}
	if m, err = actors.Unmarshal(b); err != nil {
		return nil, err
	}
	return w.h.Deliver(k, s, to, m)
}

func (w *world) alarm(a actors.Addr) error {
	k, s := w.object(a)
	return w.h.Alarm(k, s)
}

// recorder is an Effects that checks the state was durable first.
type recorder struct {
	mu  sync.Mutex
	got []string
	// durable is called before recording, to check persist-before-effects.
	durable func(from actors.Addr, e actors.Effect)
}

func (r *recorder) Handle(from actors.Addr, e actors.Effect) {
	if r.durable != nil {
		r.durable(from, e)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fmt.Sprintf("%s %T", from, e))
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// toy is a counter actor: the smallest reducer that uses every part of the host.
type toy struct {
	actors.Changes
	key string
	h   toyHeader
	n   map[string]string
}

type toyHeader struct {
	Count    int       `json:"count"`
	Pings    int       `json:"pings"`
	Alarms   int       `json:"alarms"`
	Recovers int       `json:"recovers"`
	Wake     time.Time `json:"wake,omitzero"`
	Idle     bool      `json:"idle,omitempty"`
}

func toyFactory(a actors.Addr) (actors.Actor, error) {
	if a.Key == "" {
		return nil, errors.New("no key")
	}
	return &toy{key: a.Key, n: map[string]string{}}, nil
}

func (t *toy) Apply(now time.Time, m actors.Message) []actors.Effect {
	t.MarkHeader()
	switch m := m.(type) {
	case actors.RunStart:
		t.h.Count++
		k := fmt.Sprintf("n%03d", t.h.Count)
		t.n[k] = m.Exec
		t.MarkRow(k)
		t.h.Idle = m.Run == "idle"
		if m.MaxDuration > 0 {
			t.h.Wake = now.Add(m.MaxDuration)
		}
		return []actors.Effect{
			actors.Progress{Exec: t.key, Status: actors.StatusRunning, At: now, Attempt: t.h.Count},
			actors.Reply{Msg: actors.RunStatus{Exec: t.key, Attempt: t.h.Count}},
		}
	case actors.RunCancel: // ping a peer
		return []actors.Effect{actors.Send{To: actors.RunAddr(m.Exec), Msg: actors.RunQuery{Exec: t.key}}}
	case actors.RunQuery:
		if m.Exec != t.key {
			t.h.Pings++
		}
		return []actors.Effect{actors.Reply{Msg: actors.RunStatus{Exec: t.key, Attempt: t.h.Count}}}
	case actors.AgentExit: // a reducer bug
		t.h.Count += 100
		panic("boom")
	case actors.Alarm:
		t.h.Alarms++
		t.h.Wake = time.Time{}
	case actors.Recover:
		t.h.Recovers++
	}
	return nil
}

func (t *toy) Wake() time.Time         { return t.h.Wake }
func (t *toy) Idle() bool              { return t.h.Idle }
func (t *toy) Header() ([]byte, error) { return json.Marshal(t.h) }
func (t *toy) Row(k string) ([]byte, bool, error) {
	v, ok := t.n[k]
	return []byte(v), ok, nil
}

func (t *toy) Load(h []byte, rows map[string][]byte) error {
	for k, v := range rows {
		t.n[k] = string(v)
	}
	return json.Unmarshal(h, &t.h)
}

var t0 = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

func TestHostPersistsBeforeEffects(t *testing.T) {
	rec := &recorder{}
	w := newWorld(t, toyFactory, rec, func() time.Time { return t0 })
	_, store := w.object(actors.RunAddr("a"))
	rec.durable = func(from actors.Addr, e actors.Effect) {
		if store.header(t).Count != 1 {
			t.Errorf("effect %T ran before its state was saved", e)
		}
	}
	reply, err := w.deliver(actors.RunAddr("a"), actors.RunStart{Exec: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := reply.(actors.RunStatus); !ok || st.Attempt != 1 {
		t.Fatalf("reply = %#v", reply)
	}
	w.h.Wait()
	if got := rec.list(); len(got) != 1 || got[0] != "run/a actors.Progress" {
		t.Fatalf("effects = %v", got)
	}
	if store.stored.Rows["n001"] == nil {
		t.Fatalf("row not stored: %v", store.stored.Rows)
	}
}

func TestHostReloadsAfterRestartAndRecovers(t *testing.T) {
	w := newWorld(t, toyFactory, nil, func() time.Time { return t0 })
	a := actors.RunAddr("a")
	for range 3 {
		if _, err := w.deliver(a, actors.RunStart{Exec: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	w.restart()
	reply, err := w.deliver(a, actors.RunQuery{Exec: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if st := reply.(actors.RunStatus); st.Attempt != 3 {
		t.Fatalf("after restart count = %d, want 3", st.Attempt)
	}
	_, store := w.object(a)
	if h := store.header(t); h.Recovers != 1 {
		t.Fatalf("recovers = %d, want 1", h.Recovers)
	}
	if _, err := w.deliver(a, actors.RunQuery{Exec: "a"}); err != nil {
		t.Fatal(err)
	}
	if h := store.header(t); h.Recovers != 1 {
		t.Fatalf("Recover delivered again without a restart: %d", h.Recovers)
	}
}

func TestHostMovesTheAlarmToWake(t *testing.T) {
	now := t0
	w := newWorld(t, toyFactory, nil, func() time.Time { return now })
	a := actors.RunAddr("a")
	if _, err := w.deliver(a, actors.RunStart{Exec: "x", MaxDuration: time.Minute}); err != nil {
		t.Fatal(err)
	}
	_, store := w.object(a)
	if !store.alarm.Equal(t0.Add(time.Minute)) {
		t.Fatalf("alarm = %v", store.alarm)
	}
	ops := store.alarmOps
	if _, err := w.deliver(a, actors.RunQuery{Exec: "a"}); err != nil {
		t.Fatal(err)
	}
	if store.alarmOps != ops {
		t.Fatal("alarm rewritten although Wake did not change")
	}
	now = t0.Add(time.Minute)
	w.restart() // the alarm finds the actor through storage
	if err := w.alarm(a); err != nil {
		t.Fatal(err)
	}
	if h := store.header(t); h.Alarms != 1 || !store.alarm.IsZero() {
		t.Fatalf("alarms = %d, alarm = %v", h.Alarms, store.alarm)
	}
}

func TestHostAlarmWithoutActorDeletesIt(t *testing.T) {
	w := newWorld(t, toyFactory, nil, time.Now)
	_, store := w.object(actors.RunAddr("nobody"))
	store.alarm = t0
	if err := w.alarm(actors.RunAddr("nobody")); !errors.Is(err, ErrNoActor) {
		t.Fatalf("err = %v", err)
	}
	if !store.alarm.IsZero() {
		t.Fatal("alarm kept")
	}
}

func TestHostPanicDropsUnsavedMemory(t *testing.T) {
	w := newWorld(t, toyFactory, nil, func() time.Time { return t0 })
	a := actors.RunAddr("a")
	if _, err := w.deliver(a, actors.RunStart{Exec: "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.deliver(a, actors.AgentExit{Exec: "a"}); err == nil {
		t.Fatal("panic not reported")
	}
	reply, err := w.deliver(a, actors.RunQuery{Exec: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if st := reply.(actors.RunStatus); st.Attempt != 1 {
		t.Fatalf("count = %d: memory ahead of storage survived a panic", st.Attempt)
	}
}

func TestHostSaveFailureSkipsEffects(t *testing.T) {
	rec := &recorder{}
	w := newWorld(t, toyFactory, rec, func() time.Time { return t0 })
	a := actors.RunAddr("a")
	_, store := w.object(a)
	store.failSave = true
	if _, err := w.deliver(a, actors.RunStart{Exec: "x"}); err == nil {
		t.Fatal("save failure not reported")
	}
	w.h.Wait()
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("effects performed without durable state: %v", got)
	}
}

func TestHostSendsAreCasts(t *testing.T) {
	w := newWorld(t, toyFactory, nil, func() time.Time { return t0 })
	if _, err := w.deliver(actors.RunAddr("a"), actors.RunCancel{Exec: "b"}); err != nil {
		t.Fatal(err)
	}
	w.h.Wait()
	_, b := w.object(actors.RunAddr("b"))
	if h := b.header(t); h.Pings != 1 {
		t.Fatalf("b pings = %d", h.Pings)
	}
	_, a := w.object(actors.RunAddr("a"))
	if h := a.header(t); h.Pings != 0 {
		t.Fatal("b's reply to a cast was delivered to a")
	}
}

func TestHostPassivatesIdleActors(t *testing.T) {
	w := newWorld(t, toyFactory, nil, func() time.Time { return t0 })
	a := actors.RunAddr("a")
	if _, err := w.deliver(a, actors.RunStart{Exec: "x", Run: "idle"}); err != nil {
		t.Fatal(err)
	}
	k, store := w.object(a)
	if o := w.h.objects[k]; o.actor != nil {
		t.Fatal("idle actor kept in memory")
	}
	reply, err := w.deliver(a, actors.RunQuery{Exec: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if reply.(actors.RunStatus).Attempt != 1 || store.header(t).Recovers != 0 {
		t.Fatalf("reload after passivation: %#v, recovers %d", reply, store.header(t).Recovers)
	}
}

func TestHostFreeCancelsSendsInFlight(t *testing.T) {
	tr := &blockingTransport{started: make(chan struct{})}
	h := NewHost(toyFactory, tr, HostOptions{Now: func() time.Time { return t0 }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if _, err := h.Deliver("obj-a", &memStorage{}, actors.RunAddr("a"), actors.RunCancel{Exec: "b"}); err != nil {
		t.Fatal(err)
	}
	<-tr.started
	h.Free("obj-a")
	h.Wait() // returns only because Free cancelled the send's context
	if h.Len() != 0 {
		t.Fatal("object not freed")
	}
}

// blockingTransport is a Transport whose sends wait until their context ends.
type blockingTransport struct{ started chan struct{} }

func (b *blockingTransport) Send(ctx context.Context, _, _ actors.Addr, _ actors.Message) error {
	close(b.started)
	<-ctx.Done()
	return ctx.Err()
}

// TestHostQueuesEffectsInPersistOrderUnderConcurrentDeliveries delivers to one run
// actor from many goroutines at once, through the effect queue the Worker uses. Each
// delivery persists a count and emits a Progress carrying it: the queue must perform
// them in the order the counts were persisted. When the host handed each delivery's
// effects over from a goroutine of its own (or after releasing the object's lock),
// two deliveries' effects could swap, and a late "running" overwrote "success" in D1
// and on the check-run; this test then fails.
func TestHostQueuesEffectsInPersistOrderUnderConcurrentDeliveries(t *testing.T) {
	const senders, each = 8, 100
	var mu sync.Mutex
	var got []int
	q := effectqueue.New(func(ctx context.Context, from actors.Addr, e actors.Effect) {
		p := e.(actors.Progress)
		mu.Lock()
		got = append(got, p.Attempt)
		mu.Unlock()
	}, effectqueue.Options{MaxQueued: senders * each, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	w := newWorld(t, toyFactory, q, func() time.Time { return t0 })
	a := actors.RunAddr("a")
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for range each {
				if _, err := w.deliver(a, actors.RunStart{Exec: "x"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	w.h.Wait()
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(got) != senders*each {
		t.Fatalf("%d effects performed, want %d", len(got), senders*each)
	}
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("effect %d performed carries count %d, want %d: effects applied out of persist order", i, n, i+1)
		}
	}
}

// TestHostRunsTheRealActors drives the lead's reducers through the host: a run is
// admitted, leased and started, then times out on its alarm and releases both.
func TestHostRunsTheRealActors(t *testing.T) {
	now := t0
	rec := &recorder{}
	w := newWorld(t, kinds.Factory(kinds.DefaultConfig()), rec, func() time.Time { return now })
	run := actors.RunAddr("e1")
	reply, err := w.deliver(run, actors.RunStart{Exec: "e1", Run: "checks", Pool: "default", Sandbox: "sb1", MaxDuration: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if st := reply.(actors.RunStatus); !st.Created || st.Status != actors.StatusQueued {
		t.Fatalf("RunStart reply = %#v", st)
	}
	w.h.Wait()
	reply, err = w.deliver(run, actors.RunQuery{Exec: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if st := reply.(actors.RunStatus); st.Status != actors.StatusLeased || st.Attempt != 1 {
		t.Fatalf("status = %#v; sends %v", st, w.sent)
	}
	if !contains(rec.list(), "run/e1 actors.StartAgent") {
		t.Fatalf("no StartAgent: %v", rec.list())
	}

	now = now.Add(2 * time.Minute)
	w.restart()
	if err := w.alarm(run); err != nil {
		t.Fatal(err)
	}
	w.h.Wait()
	reply, _ = w.deliver(run, actors.RunQuery{Exec: "e1"})
	if st := reply.(actors.RunStatus); st.Status != actors.StatusTimedOut {
		t.Fatalf("after the deadline: %#v", st)
	}
	for _, want := range []string{"run/e1->admission/default admission.release", "run/e1->lease/sb1 lease.release",
		"admission/default->run/e1 admission.released", "lease/sb1->run/e1 lease.released"} {
		if !contains(w.sent, want) {
			t.Errorf("missing send %q in %v", want, w.sent)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
