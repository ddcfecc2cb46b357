// Package lease serializes the executions that share one sandbox id: one holder at a
// time, waiters in arrival order, a silent holder reclaimed after its TTL, and a
// waiter that waits too long told ContainerBusy.
//
// The state is header-only: the waiters of one sandbox are the few runs that share it.
package lease

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// Config holds the lease limits; DefaultConfig gives the contract's numbers.
type Config struct {
	TTL       time.Duration // a holder silent this long is reclaimed
	MaxWait   time.Duration // a waiter gets ContainerBusy after this long
	WaiterTTL time.Duration // a waiter silent this long drops out
	Tick      time.Duration // sweep period while anyone holds or waits
	Forget    time.Duration // how long a released ticket is remembered
}

// DefaultConfig: TTL 10 min, wait 10 min, waiter TTL 100 s, sweep every 5 s; released
// tickets remembered for 2 min (long enough for any message in flight).
func DefaultConfig() Config {
	return Config{TTL: 10 * time.Minute, MaxWait: 10 * time.Minute, WaiterTTL: 100 * time.Second, Tick: 5 * time.Second,
		Forget: 2 * time.Minute}
}

type holder struct {
	Exec        string    `json:"exec"`
	Ticket      int       `json:"ticket,omitempty"`
	AcquiredAt  time.Time `json:"acquiredAt"`
	HeartbeatAt time.Time `json:"heartbeatAt"`
}

type waiter struct {
	Exec        string    `json:"exec"`
	Ticket      int       `json:"ticket,omitempty"`
	Since       time.Time `json:"since"`
	HeartbeatAt time.Time `json:"heartbeatAt"`
}

type released struct {
	Ticket int       `json:"ticket"`
	At     time.Time `json:"at"`
}

type state struct {
	Sandbox string   `json:"sandbox"`
	Holder  *holder  `json:"holder,omitempty"`
	Waiters []waiter `json:"waiters,omitempty"`
	// Released remembers the last ticket each execution released: a late duplicate
	// acquire of that ticket must not take the sandbox again.
	Released map[string]released `json:"released,omitempty"`
	Wake     time.Time           `json:"wake,omitzero"`
}

// Actor is one sandbox's lease.
type Actor struct {
	actors.Changes
	cfg Config
	s   state
}

var _ actors.Actor = (*Actor)(nil)

// New returns a free lease.
func New(sandbox string, cfg Config) *Actor {
	if cfg.Forget <= 0 {
		cfg.Forget = DefaultConfig().Forget
	}
	return &Actor{cfg: cfg, s: state{Sandbox: sandbox}}
}

// Apply is the whole behaviour.
func (a *Actor) Apply(now time.Time, m actors.Message) []actors.Effect {
	var out []actors.Effect
	switch m := m.(type) {
	case actors.LeaseAcquire:
		if a.wasReleased(m.Exec, m.Ticket) {
			return nil
		}
		h, i := a.s.Holder, a.waiting(m.Exec)
		switch {
		case h == nil:
			a.s.Holder = &holder{Exec: m.Exec, Ticket: m.Ticket, AcquiredAt: now, HeartbeatAt: now}
			out = append(out, a.granted(a.s.Holder))
		case h.Exec == m.Exec:
			if m.Ticket < h.Ticket {
				return nil // a late request of an earlier ticket
			}
			h.Ticket, h.HeartbeatAt = m.Ticket, now
			out = append(out, a.granted(h))
		case i >= 0:
			if m.Ticket < a.s.Waiters[i].Ticket {
				return nil
			}
			a.s.Waiters[i].Ticket, a.s.Waiters[i].HeartbeatAt = m.Ticket, now
			out = append(out, a.waitingFor(a.s.Waiters[i]))
		default:
			w := waiter{Exec: m.Exec, Ticket: m.Ticket, Since: now, HeartbeatAt: now}
			a.s.Waiters = append(a.s.Waiters, w)
			out = append(out, a.waitingFor(w))
		}
	case actors.LeaseHeartbeat:
		if a.wasReleased(m.Exec, m.Ticket) {
			return nil
		}
		h, i := a.s.Holder, a.waiting(m.Exec)
		switch {
		case h != nil && h.Exec == m.Exec && m.Ticket == h.Ticket:
			h.HeartbeatAt = now
			out = append(out, a.granted(h))
		case i >= 0 && m.Ticket == a.s.Waiters[i].Ticket:
			a.s.Waiters[i].HeartbeatAt = now
			out = append(out, a.waitingFor(a.s.Waiters[i]))
		case h != nil && h.Exec == m.Exec && m.Ticket < h.Ticket, i >= 0 && m.Ticket < a.s.Waiters[i].Ticket:
			return nil // a late heartbeat of an earlier ticket
		default:
			out = append(out, a.send(m.Exec, actors.LeaseUnknown{Exec: m.Exec, Ticket: m.Ticket}))
		}
	case actors.LeaseRelease:
		if h := a.s.Holder; h != nil && h.Exec == m.Exec && m.Ticket >= h.Ticket {
			a.s.Holder = nil
			out = a.promote(now, out)
		} else if i := a.waiting(m.Exec); i >= 0 && m.Ticket >= a.s.Waiters[i].Ticket {
			a.s.Waiters = append(a.s.Waiters[:i], a.s.Waiters[i+1:]...)
		}
		if r, ok := a.s.Released[m.Exec]; !ok || r.Ticket < m.Ticket {
			if a.s.Released == nil {
				a.s.Released = map[string]released{}
			}
			a.s.Released[m.Exec] = released{Ticket: m.Ticket, At: now}
		}
		out = append(out, a.send(m.Exec, actors.LeaseReleased{Exec: m.Exec, Ticket: m.Ticket}))
	case actors.Alarm:
		out = a.sweep(now)
	case actors.Recover:
		// The host was down, not the runs: fresh heartbeats, then re-send the truth.
		if a.s.Holder != nil {
			a.s.Holder.HeartbeatAt = now
			out = append(out, a.granted(a.s.Holder))
		}
		for i := range a.s.Waiters {
			a.s.Waiters[i].HeartbeatAt = now
		}
		out = a.promote(now, out)
	default:
		return nil
	}
	a.MarkHeader()
	a.schedule(now)
	return out
}

// wasReleased reports that the execution released this ticket (or a later one).
func (a *Actor) wasReleased(exec string, ticket int) bool {
	r, ok := a.s.Released[exec]
	return ok && ticket <= r.Ticket
}

func (a *Actor) sweep(now time.Time) []actors.Effect {
	var out []actors.Effect
	for exec, r := range a.s.Released {
		if now.Sub(r.At) >= a.cfg.Forget {
			delete(a.s.Released, exec)
		}
	}
	if a.s.Holder != nil && now.Sub(a.s.Holder.HeartbeatAt) >= a.cfg.TTL {
		a.s.Holder = nil
	}
	kept := a.s.Waiters[:0]
	for _, w := range a.s.Waiters {
		switch {
		case now.Sub(w.Since) >= a.cfg.MaxWait:
			holder := ""
			if a.s.Holder != nil {
				holder = a.s.Holder.Exec
			}
			out = append(out, a.send(w.Exec, actors.LeaseBusy{Exec: w.Exec, Ticket: w.Ticket, Sandbox: a.s.Sandbox, Holder: holder, Waited: now.Sub(w.Since)}))
		case now.Sub(w.HeartbeatAt) >= a.cfg.WaiterTTL:
		default:
			kept = append(kept, w)
		}
	}
	a.s.Waiters = kept
	return a.promote(now, out)
}

// promote hands a free sandbox to the first waiter.
func (a *Actor) promote(now time.Time, out []actors.Effect) []actors.Effect {
	if a.s.Holder != nil || len(a.s.Waiters) == 0 {
		return out
	}
	w := a.s.Waiters[0]
	a.s.Waiters = a.s.Waiters[1:]
	a.s.Holder = &holder{Exec: w.Exec, Ticket: w.Ticket, AcquiredAt: now, HeartbeatAt: now}
	return append(out, a.granted(a.s.Holder))
}

func (a *Actor) waiting(exec string) int {
	for i, w := range a.s.Waiters {
		if w.Exec == exec {
			return i
		}
	}
	return -1
}

func (a *Actor) granted(h *holder) actors.Effect {
	return a.send(h.Exec, actors.LeaseGranted{Exec: h.Exec, Ticket: h.Ticket, Sandbox: a.s.Sandbox})
}

func (a *Actor) waitingFor(w waiter) actors.Effect {
	return a.send(w.Exec, actors.LeaseWaiting{Exec: w.Exec, Ticket: w.Ticket, Holder: a.s.Holder.Exec})
}

func (a *Actor) send(exec string, m actors.Message) actors.Effect {
	return actors.Send{To: actors.RunAddr(exec), Msg: m}
}

func (a *Actor) schedule(now time.Time) {
	switch {
	case a.Idle():
		a.s.Wake = time.Time{}
	case a.s.Wake.IsZero() || !a.s.Wake.After(now):
		a.s.Wake = now.Add(a.cfg.Tick)
	}
}

// Holder is the current holder's execution id, or "".
func (a *Actor) Holder() string {
	if a.s.Holder == nil {
		return ""
	}
	return a.s.Holder.Exec
}

// Wake implements actors.Actor.
func (a *Actor) Wake() time.Time { return a.s.Wake }

// Idle implements actors.Actor.
func (a *Actor) Idle() bool { return a.s.Holder == nil && len(a.s.Waiters) == 0 }

// Header implements actors.Actor.
func (a *Actor) Header() ([]byte, error) { return json.Marshal(a.s) }

// Row implements actors.Actor: the lease has no rows.
func (a *Actor) Row(string) ([]byte, bool, error) { return nil, false, nil }

// Load implements actors.Actor.
func (a *Actor) Load(h []byte, _ map[string][]byte) error {
	if len(h) == 0 {
		return nil
	}
	if err := json.Unmarshal(h, &a.s); err != nil {
		return fmt.Errorf("lease %s: %w", a.s.Sandbox, err)
	}
	return nil
}
