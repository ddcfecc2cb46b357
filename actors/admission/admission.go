// Package admission is the per-pool admission queue: FIFO, capped, with a grant
// that must be accepted.
//
// One actor per pool (lean, browser). Waiters are ordered by (order key, execution
// id); a fan-out child passes its parent's order key and so keeps the parent's place.
//
// A waiter costs the pool nothing until its turn: it sends one request, is answered
// with its position, and is silent from then on (it used to heartbeat every 15 s,
// O(waiters) messages forever). Its liveness is checked when its turn comes: the
// grant is an offer (AdmitGranted with Confirm) that holds the slot for AckTTL; the
// run accepts it (AdmitAccept) and is confirmed (AdmitGranted without Confirm), and
// only then starts anything. An offer not accepted in time is withdrawn (the run is
// told AdmitUnknown, in case it is alive and only its messages were lost) and the
// slot goes to the next waiter. Offers are re-sent on every sweep until accepted or
// withdrawn, which heals a lost offer or accept. Holders (at most Cap) heartbeat, and
// every heartbeat is answered with the current truth.
//
// Expiry, offers' deadlines, wait timeouts and queue-position reports run on a
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
	AckTTL    time.Duration // an offered slot not accepted this long goes to the next waiter
	MaxWait   time.Duration // a request waits at most this long
	Tick      time.Duration // sweep period while the pool is not empty
	Forget    time.Duration // how long a released ticket is remembered
}

// DefaultConfig is the contract's: cap 16, holder TTL 10 min, max wait 20 min; an
// offer is accepted within 30 s (a live run answers in milliseconds; 30 s rides out a
// few lost messages, as offers are re-sent every sweep); sweep every 5 s; released
// tickets remembered for 2 min (a late duplicate is a message already in flight:
// hosts deliver within milliseconds).
func DefaultConfig() Config {
	return Config{Cap: 16, HolderTTL: 10 * time.Minute, AckTTL: 30 * time.Second, MaxWait: 20 * time.Minute,
		Tick: 5 * time.Second, Forget: 2 * time.Minute}
}

// An entry is queued, then offered (it holds a slot until accepted or withdrawn),
// then admitted. State written before offers existed has only queued and admitted.
const (
	stateQueued   = "queued"
	stateOffered  = "offered"
	stateAdmitted = "admitted"
)

// Position reports: every change is reported while a waiter is among the first
// exactPositions; deeper, a change is reported once it is at least 1/8 of the last
// reported position. A waiter then gets O(log depth) reports over its whole wait
// instead of one per sweep in which the head moved, and the check-run still shows
// where it stands within 12.5 %.
const exactPositions = 32

func worthReporting(reported, pos int) bool {
	if reported < 0 || pos < exactPositions || reported < exactPositions {
		return pos != reported
	}
	d := reported - pos
	if d < 0 {
		d = -d
	}
	return d*8 >= reported
}

// entry is one row: a waiter or a holder.
type entry struct {
	Exec        string    `json:"exec"`
	Ticket      int       `json:"ticket,omitempty"`
	State       string    `json:"state"`
	OrderKey    time.Time `json:"orderKey"`
	QueuedAt    time.Time `json:"queuedAt"`
	HeartbeatAt time.Time `json:"heartbeatAt"` // holders only: waiters do not heartbeat
	OfferedAt   time.Time `json:"offeredAt,omitzero"`
	AdmittedAt  time.Time `json:"admittedAt,omitzero"`
	Reported    int       `json:"reported"` // last position reported; -1 none
}

// holds reports that the entry takes a slot: offered or admitted.
func (e *entry) holds() bool { return e.State != stateQueued }

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
	queue    []*entry          // queued entries in FIFO order (derived)
	held     map[string]*entry // offered and admitted entries, at most Cap (derived)
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
	return &Actor{cfg: cfg, h: header{Pool: pool}, entries: map[string]*entry{}, released: map[string]*gone{},
		held: map[string]*entry{}}
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
		out = a.fromHolder(now, m.Exec, m.Ticket, func(e *entry) []actors.Effect {
			if e.State == stateAdmitted {
				e.HeartbeatAt = now
				a.MarkRow(e.Exec)
			}
			return []actors.Effect{a.truth(e)}
		})
	case actors.AdmitAccept:
		out = a.fromHolder(now, m.Exec, m.Ticket, func(e *entry) []actors.Effect {
			if e.State == stateOffered {
				e.State, e.AdmittedAt = stateAdmitted, now
			}
			if e.State == stateAdmitted {
				e.HeartbeatAt = now
				a.MarkRow(e.Exec)
			}
			return []actors.Effect{a.truth(e)}
		})
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
		// The host was down, not the runs: give holders a fresh heartbeat and offers a
		// fresh deadline, so a long outage reclaims nobody before they can speak, and
		// re-send what they may have missed. Waiters need nothing: a run that never
		// heard its position asks again on its own.
		for _, e := range a.holding() {
			e.HeartbeatAt = now
			if e.State == stateOffered {
				e.OfferedAt = now
			}
			a.MarkRow(e.Exec)
			out = append(out, a.truth(e))
		}
		out = a.pump(now, out)
	}
	a.schedule(now)
	return out
}

// fromHolder routes a heartbeat or an acceptance: one of an earlier or released ticket
// is late and draws no answer; one the pool does not know (or of a later ticket) is
// answered AdmitUnknown, so the run asks again; the rest go to handle.
func (a *Actor) fromHolder(now time.Time, exec string, ticket int, handle func(e *entry) []actors.Effect) []actors.Effect {
	e := a.entries[exec]
	switch {
	case e != nil && ticket < e.Ticket, a.wasReleased(exec, ticket):
		return nil
	case e == nil || ticket > e.Ticket:
		var out []actors.Effect
		if e != nil { // the run has moved on: its old entry is stale
			a.remove(e)
			out = a.pump(now, out)
		}
		return append(out, a.send(exec, actors.AdmitUnknown{Exec: exec, Ticket: ticket}))
	}
	return handle(e)
}

func (a *Actor) request(now time.Time, m actors.AdmitRequest) []actors.Effect {
	var out []actors.Effect
	if e := a.entries[m.Exec]; e != nil {
		switch {
		case m.Ticket < e.Ticket:
			return nil // a late request of an earlier ticket
		case m.Ticket == e.Ticket:
			if e.State == stateAdmitted {
				e.HeartbeatAt = now
				a.MarkRow(e.Exec)
			}
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

// pump offers free slots to the head of the queue. Waiters are not checked here:
// the offer is the check.
func (a *Actor) pump(now time.Time, out []actors.Effect) []actors.Effect {
	for len(a.held) < a.cfg.Cap && len(a.queue) > 0 {
		e := a.queue[0]
		a.queue[0] = nil
		a.queue = a.queue[1:]
		e.State, e.OfferedAt = stateOffered, now
		a.held[e.Exec] = e
		a.MarkRow(e.Exec)
		out = append(out, a.truth(e))
	}
	return out
}

// wasReleased reports that the execution released this ticket (or a later one).
func (a *Actor) wasReleased(exec string, ticket int) bool {
	g := a.released[exec]
	return g != nil && ticket <= g.Ticket
}

// sweep reclaims silent holders, withdraws offers not accepted in time (re-sending the
// others), times out old requests, offers what became free and reports the positions
// that changed enough since the last report.
func (a *Actor) sweep(now time.Time) []actors.Effect {
	var out []actors.Effect
	for exec, g := range a.released {
		if now.Sub(g.At) >= a.cfg.Forget {
			delete(a.released, exec)
			a.MarkRow(goneRow + exec)
		}
	}
	for _, e := range a.holding() {
		switch {
		case e.State == stateAdmitted && now.Sub(e.HeartbeatAt) >= a.cfg.HolderTTL:
			a.remove(e)
		case e.State == stateOffered && now.Sub(e.OfferedAt) >= a.cfg.AckTTL:
			// Nobody accepted: a live run whose messages were lost asks again at
			// its place; a dead one never hears this and costs nothing more.
			a.remove(e)
			out = append(out, a.send(e.Exec, actors.AdmitUnknown{Exec: e.Exec, Ticket: e.Ticket}))
		case e.State == stateOffered && now.Sub(e.OfferedAt) >= a.cfg.Tick:
			out = append(out, a.truth(e)) // the offer or its acceptance may have been lost
		}
	}
	var late []*entry
	for _, e := range a.queue {
		if now.Sub(e.QueuedAt) >= a.cfg.MaxWait {
			late = append(late, e)
		}
	}
	for _, e := range late {
		pos := a.position(e)
		a.remove(e)
		out = append(out, a.send(e.Exec, actors.AdmitTimedOut{
			Exec: e.Exec, Ticket: e.Ticket, QueuedFor: now.Sub(e.QueuedAt), Position: pos, Busy: len(a.held), Cap: a.cfg.Cap}))
	}
	out = a.pump(now, out)
	for i, e := range a.queue {
		if worthReporting(e.Reported, i) {
			out = append(out, a.report(e, i))
		}
	}
	return out
}

// holding returns the entries that hold a slot in a stable order, so the effects of a
// sweep do not depend on map iteration.
func (a *Actor) holding() []*entry {
	all := make([]*entry, 0, len(a.held))
	for _, e := range a.held {
		all = append(all, e)
	}
	slices.SortFunc(all, compare)
	return all
}

func (a *Actor) remove(e *entry) {
	delete(a.entries, e.Exec)
	a.MarkRow(e.Exec)
	if e.holds() {
		delete(a.held, e.Exec)
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

// truth answers a heartbeat, an acceptance or a repeated request with where the
// entry stands: offered (accept it), admitted, or queued at its position.
func (a *Actor) truth(e *entry) actors.Effect {
	switch e.State {
	case stateOffered:
		return a.send(e.Exec, actors.AdmitGranted{Exec: e.Exec, Ticket: e.Ticket, Confirm: true})
	case stateAdmitted:
		return a.send(e.Exec, actors.AdmitGranted{Exec: e.Exec, Ticket: e.Ticket})
	}
	return a.report(e, a.position(e))
}

func (a *Actor) report(e *entry, pos int) actors.Effect {
	e.Reported = pos
	a.MarkRow(e.Exec)
	return a.send(e.Exec, actors.AdmitQueued{Exec: e.Exec, Ticket: e.Ticket, Queue: actors.QueueInfo{
		Position: pos, Busy: len(a.held), Cap: a.cfg.Cap, Deadline: e.QueuedAt.Add(a.cfg.MaxWait)}})
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
	a.entries, a.released, a.queue, a.held = map[string]*entry{}, map[string]*gone{}, nil, map[string]*entry{}
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
		switch e.State {
		case stateQueued:
			a.queue = append(a.queue, e)
		case stateOffered, stateAdmitted:
			a.held[e.Exec] = e
		default:
			return fmt.Errorf("admission %s row %s: state %q is not queued, offered or admitted", a.h.Pool, k, e.State)
		}
		a.entries[e.Exec] = e
	}
	slices.SortFunc(a.queue, compare)
	return nil
}

// Holders, Admitted, Offers and Queue expose the state to tests and invariant
// checks. Holders are the executions that take a slot: offered or admitted.
func (a *Actor) Holders() []string { return a.with(func(e *entry) bool { return e.holds() }) }

// Admitted lists the holders that accepted their offer.
func (a *Actor) Admitted() []string {
	return a.with(func(e *entry) bool { return e.State == stateAdmitted })
}

// Offers maps each execution with an offer not yet accepted to when it was offered.
func (a *Actor) Offers() map[string]time.Time {
	out := map[string]time.Time{}
	for _, e := range a.entries {
		if e.State == stateOffered {
			out[e.Exec] = e.OfferedAt
		}
	}
	return out
}

// Ticket is the ticket of the execution's entry, if it has one.
func (a *Actor) Ticket(exec string) (int, bool) {
	if e := a.entries[exec]; e != nil {
		return e.Ticket, true
	}
	return 0, false
}

func (a *Actor) with(keep func(e *entry) bool) []string {
	var out []string
	for _, e := range a.entries {
		if keep(e) {
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
