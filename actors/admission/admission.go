// Package admission is the per-pool admission queue: FIFO, capped, with heartbeats.
//
// One actor per pool (lean, browser). Waiters are ordered by (order key, execution
// id); a fan-out child passes its parent's order key and so keeps the parent's place.
// Holders and waiters heartbeat; every heartbeat is answered with the current truth,
// which heals lost grants. Expiry, timeouts and queue-position reports run on a
// periodic sweep (the actor's one alarm), so a message does no scan of the queue: it
// finds its place by binary search (O(log n) compares) and moves the waiters behind it
// with slices.Insert (an O(n) memmove, cheap beside a scan that runs code per waiter).
package admission

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// Config holds the pool's limits; DefaultConfig gives the contract's numbers.
type Config struct {
	Cap       int           // slots; ADMISSION_CAP, default 16
	HolderTTL time.Duration // a holder silent this long is reclaimed
	WaiterTTL time.Duration // a waiter silent this long drops out
	MaxWait   time.Duration // a request waits at most this long
	Tick      time.Duration // sweep period while the pool is not empty
	Forget    time.Duration // how long a released ticket is remembered
}

// DefaultConfig is the contract's: cap 16, holder TTL 10 min, waiter TTL 100 s,
// max wait 20 min; sweep every 5 s; released tickets remembered for 2 min (a late
// duplicate is a message already in flight: hosts deliver within milliseconds).
func DefaultConfig() Config {
	return Config{Cap: 16, HolderTTL: 10 * time.Minute, WaiterTTL: 100 * time.Second, MaxWait: 20 * time.Minute,
		Tick: 5 * time.Second, Forget: 2 * time.Minute}
}

const (
	stateQueued   = "queued"
	stateAdmitted = "admitted"
)

// entry is one row: a waiter or a holder.
type entry struct {
	Exec        string    `json:"exec"`
	Ticket      int       `json:"ticket,omitempty"`
	State       string    `json:"state"`
	OrderKey    time.Time `json:"orderKey"`
	QueuedAt    time.Time `json:"queuedAt"`
	HeartbeatAt time.Time `json:"heartbeatAt"`
	AdmittedAt  time.Time `json:"admittedAt,omitzero"`
	Reported    int       `json:"reported"` // last position reported; -1 none
}

func (e *entry) before(o *entry) bool {
	if !e.OrderKey.Equal(o.OrderKey) {
		return e.OrderKey.Before(o.OrderKey)
	}
	return e.Exec < o.Exec
}

type gone struct {
	Ticket int       `json:"ticket"`
	At     time.Time `json:"at"`
}

const goneRow = "~"

type header struct {
	Pool string    `json:"pool"`
	Wake time.Time `json:"wake,omitzero"`
}

// Actor is one pool's admission state.
type Actor struct {
	actors.Changes
	cfg     Config
	h       header
	entries map[string]*entry
	// released remembers the last ticket each execution released (rows "~<exec>"):
	// a late duplicate request or heartbeat of that ticket must not take a slot again.
	released map[string]*gone
	queue    []*entry // queued entries in FIFO order (derived)
	holders  int      // admitted entries (derived)
}

var _ actors.Actor = (*Actor)(nil)

// New returns an empty pool.
func New(pool string, cfg Config) *Actor {
	if cfg.Cap <= 0 {
		cfg.Cap = DefaultConfig().Cap
	}
	if cfg.Forget <= 0 {
		cfg.Forget = DefaultConfig().Forget
	}
	return &Actor{cfg: cfg, h: header{Pool: pool}, entries: map[string]*entry{}, released: map[string]*gone{}}
}

// Apply is the whole behaviour.
func (a *Actor) Apply(now time.Time, m actors.Message) []actors.Effect {
	var out []actors.Effect
	switch m := m.(type) {
	case actors.AdmitRequest:
		if a.wasReleased(m.Exec, m.Ticket) {
			break
		}
		out = a.request(now, m)
	case actors.AdmitHeartbeat:
		e := a.entries[m.Exec]
		switch {
		case e != nil && m.Ticket < e.Ticket, a.wasReleased(m.Exec, m.Ticket):
			// A heartbeat of an earlier or released ticket, late: nothing to say.
		case e == nil || m.Ticket > e.Ticket:
			if e != nil { // the run has moved on: its old entry is stale
				a.remove(e)
				out = a.pump(now, out)
			}
			out = append(out, a.send(m.Exec, actors.AdmitUnknown{Exec: m.Exec, Ticket: m.Ticket}))
		default:
			e.HeartbeatAt = now
			a.MarkRow(e.Exec)
			out = append(out, a.truth(e))
		}
	case actors.AdmitRelease:
		if e := a.entries[m.Exec]; e != nil && m.Ticket >= e.Ticket {
			a.remove(e)
			out = a.pump(now, out)
		}
		if g := a.released[m.Exec]; g == nil || g.Ticket < m.Ticket {
			a.released[m.Exec] = &gone{Ticket: m.Ticket, At: now}
			a.MarkRow(goneRow + m.Exec)
		}
		out = append(out, a.send(m.Exec, actors.AdmitReleased{Exec: m.Exec, Ticket: m.Ticket}))
	case actors.Alarm:
		out = a.sweep(now)
	case actors.Recover:
		// The host was down, not the runs: give everyone a fresh heartbeat so a long
		// outage does not reclaim every holder before they can speak.
		for _, e := range a.entries {
			e.HeartbeatAt = now
			a.MarkRow(e.Exec)
		}
		for _, e := range a.sorted() {
			out = append(out, a.truth(e))
		}
		out = a.pump(now, out)
	}
	a.schedule(now)
	return out
}

func (a *Actor) request(now time.Time, m actors.AdmitRequest) []actors.Effect {
	var out []actors.Effect
	if e := a.entries[m.Exec]; e != nil {
		switch {
		case m.Ticket < e.Ticket:
			return nil // a late request of an earlier ticket
		case m.Ticket == e.Ticket:
			e.HeartbeatAt = now
			a.MarkRow(e.Exec)
			return []actors.Effect{a.truth(e)}
		}
		a.remove(e) // the run released that ticket and queues again
		out = a.pump(now, out)
	}
	order := m.OrderKey
	if order.IsZero() {
		order = now
	}
	e := &entry{Exec: m.Exec, Ticket: m.Ticket, State: stateQueued, OrderKey: order, QueuedAt: now, HeartbeatAt: now, Reported: -1}
	a.entries[e.Exec] = e
	a.MarkRow(e.Exec)
	i, _ := slices.BinarySearchFunc(a.queue, e, compare)
	a.queue = slices.Insert(a.queue, i, e)
	out = a.pump(now, out)
	if e.State == stateQueued {
		out = append(out, a.report(e, a.position(e)))
	}
	return out
}

// pump grants free slots to the head of the queue, skipping waiters that went silent.
func (a *Actor) pump(now time.Time, out []actors.Effect) []actors.Effect {
	for a.holders < a.cfg.Cap && len(a.queue) > 0 {
		e := a.queue[0]
		a.queue = a.queue[1:]
		if now.Sub(e.HeartbeatAt) >= a.cfg.WaiterTTL {
			delete(a.entries, e.Exec)
			a.MarkRow(e.Exec)
			continue
		}
		e.State, e.AdmittedAt = stateAdmitted, now
		a.holders++
		a.MarkRow(e.Exec)
		out = append(out, a.send(e.Exec, actors.AdmitGranted{Exec: e.Exec, Ticket: e.Ticket}))
	}
	return out
}

// wasReleased reports that the execution released this ticket (or a later one).
func (a *Actor) wasReleased(exec string, ticket int) bool {
	g := a.released[exec]
	return g != nil && ticket <= g.Ticket
}

// sweep reclaims silent holders, drops silent waiters, times out old requests, grants
// what became free and reports every position that changed since the last report.
func (a *Actor) sweep(now time.Time) []actors.Effect {
	var out []actors.Effect
	for exec, g := range a.released {
		if now.Sub(g.At) >= a.cfg.Forget {
			delete(a.released, exec)
			a.MarkRow(goneRow + exec)
		}
	}
	for _, e := range a.sorted() {
		switch {
		case e.State == stateAdmitted && now.Sub(e.HeartbeatAt) >= a.cfg.HolderTTL:
			a.remove(e)
		case e.State == stateQueued && now.Sub(e.QueuedAt) >= a.cfg.MaxWait:
			pos := a.position(e)
			a.remove(e)
			out = append(out, a.send(e.Exec, actors.AdmitTimedOut{
				Exec: e.Exec, Ticket: e.Ticket, QueuedFor: now.Sub(e.QueuedAt), Position: pos, Busy: a.holders, Cap: a.cfg.Cap}))
		case e.State == stateQueued && now.Sub(e.HeartbeatAt) >= a.cfg.WaiterTTL:
			a.remove(e)
		}
	}
	out = a.pump(now, out)
	for i, e := range a.queue {
		if e.Reported != i {
			out = append(out, a.report(e, i))
		}
	}
	return out
}

// sorted returns the entries in a stable order (holders, then queue order), so the
// effects of a sweep do not depend on map iteration.
func (a *Actor) sorted() []*entry {
	all := make([]*entry, 0, len(a.entries))
	for _, e := range a.entries {
		if e.State == stateAdmitted {
			all = append(all, e)
		}
	}
	slices.SortFunc(all, compare)
	return append(all, a.queue...)
}

func (a *Actor) remove(e *entry) {
	delete(a.entries, e.Exec)
	a.MarkRow(e.Exec)
	if e.State == stateAdmitted {
		a.holders--
		return
	}
	if i, ok := slices.BinarySearchFunc(a.queue, e, compare); ok {
		a.queue = slices.Delete(a.queue, i, i+1)
	}
}

func (a *Actor) position(e *entry) int {
	i, _ := slices.BinarySearchFunc(a.queue, e, compare)
	return i
}

// truth answers a heartbeat or a repeated request with where the entry stands.
func (a *Actor) truth(e *entry) actors.Effect {
	if e.State == stateAdmitted {
		return a.send(e.Exec, actors.AdmitGranted{Exec: e.Exec, Ticket: e.Ticket})
	}
	return a.report(e, a.position(e))
}

func (a *Actor) report(e *entry, pos int) actors.Effect {
	e.Reported = pos
	a.MarkRow(e.Exec)
	return a.send(e.Exec, actors.AdmitQueued{Exec: e.Exec, Ticket: e.Ticket, Queue: actors.QueueInfo{
		Position: pos, Busy: a.holders, Cap: a.cfg.Cap, Deadline: e.QueuedAt.Add(a.cfg.MaxWait)}})
}

func (a *Actor) send(exec string, m actors.Message) actors.Effect {
	return actors.Send{To: actors.RunAddr(exec), Msg: m}
}

// schedule keeps the sweep running while anyone is in the pool.
func (a *Actor) schedule(now time.Time) {
	want := a.h.Wake
	switch {
	case len(a.entries) == 0:
		want = time.Time{}
	case want.IsZero() || !want.After(now):
		want = now.Add(a.cfg.Tick)
	}
	if !want.Equal(a.h.Wake) {
		a.h.Wake = want
		a.MarkHeader()
	}
}

func compare(x, y *entry) int {
	switch {
	case x.before(y):
		return -1
	case y.before(x):
		return 1
	}
	return 0
}

// Wake implements actors.Actor.
func (a *Actor) Wake() time.Time { return a.h.Wake }

// Idle implements actors.Actor.
func (a *Actor) Idle() bool { return len(a.entries) == 0 }

// Header implements actors.Actor.
func (a *Actor) Header() ([]byte, error) { return json.Marshal(a.h) }

// Row implements actors.Actor.
func (a *Actor) Row(key string) ([]byte, bool, error) {
	if exec, ok := strings.CutPrefix(key, goneRow); ok {
		g := a.released[exec]
		if g == nil {
			return nil, false, nil
		}
		b, err := json.Marshal(g)
		return b, true, err
	}
	e := a.entries[key]
	if e == nil {
		return nil, false, nil
	}
	b, err := json.Marshal(e)
	return b, true, err
}

// Load implements actors.Actor.
func (a *Actor) Load(h []byte, rows map[string][]byte) error {
	if len(h) > 0 {
		if err := json.Unmarshal(h, &a.h); err != nil {
			return fmt.Errorf("admission %s header: %w", a.h.Pool, err)
		}
	}
	a.entries, a.released, a.queue, a.holders = map[string]*entry{}, map[string]*gone{}, nil, 0
	for k, b := range rows {
		if exec, ok := strings.CutPrefix(k, goneRow); ok {
			g := &gone{}
			if err := json.Unmarshal(b, g); err != nil {
				return fmt.Errorf("admission %s row %s: %w", a.h.Pool, k, err)
			}
			a.released[exec] = g
			continue
		}
		e := &entry{}
		if err := json.Unmarshal(b, e); err != nil {
			return fmt.Errorf("admission %s row %s: %w", a.h.Pool, k, err)
		}
		a.entries[e.Exec] = e
		if e.State == stateAdmitted {
			a.holders++
		} else {
			a.queue = append(a.queue, e)
		}
	}
	slices.SortFunc(a.queue, compare)
	return nil
}

// Holders and Queue expose the state to tests and invariant checks.
func (a *Actor) Holders() []string {
	var out []string
	for _, e := range a.entries {
		if e.State == stateAdmitted {
			out = append(out, e.Exec)
		}
	}
	slices.Sort(out)
	return out
}

// Queue lists the waiters in FIFO order with their order keys.
func (a *Actor) Queue() (execs []string, orderKeys []time.Time) {
	for _, e := range a.queue {
		execs = append(execs, e.Exec)
		orderKeys = append(orderKeys, e.OrderKey)
	}
	return execs, orderKeys
}

// Cap is the pool's cap.
func (a *Actor) Cap() int { return a.cfg.Cap }
