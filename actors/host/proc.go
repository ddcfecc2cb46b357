package host

import (
	"fmt"
	"time"

	"ergo.services/ergo/act"
	"ergo.services/ergo/gen"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// delivery is one message for an actor process, from the router.
type delivery struct {
	msg   actors.Message
	reply chan<- result
}

// passivate tells an actor process to stop; the router sends it only when nothing
// else is in flight to that process.
type passivate struct{}

// proc is the ergo process of one actor.
type proc struct {
	act.Actor
	h    *Host
	addr actors.Addr

	a      actors.Actor // nil until the first message loads it
	broken error        // set once the actor failed; it then only answers errors
	seq    uint64       // deliveries handled, compared with the router's count

	// What storage holds for this actor, to write the actors row only when it changes.
	stored bool
	dbWake time.Time
	dbIdle bool
	// The wake time last reported to the router, which owns the alarm.
	armed     bool
	armedWake time.Time
}

func (p *proc) Init(args ...any) error {
	p.h, p.addr = args[0].(*Host), args[1].(actors.Addr)
	return nil
}

func (p *proc) HandleMessage(from gen.PID, message any) error {
	switch m := message.(type) {
	case passivate:
		return gen.TerminateReasonNormal
	case delivery:
		p.seq++
		p.h.store.submit(p.apply(m))
	}
	return nil
}

// apply runs one message through the reducer and returns the record to persist.
// A panic or a state that cannot be serialised breaks the actor: its in-memory state
// is ahead of storage, so the router drops the process and the next message loads
// the last durable state.
func (p *proc) apply(m delivery) (rec *record) {
	rec = &record{addr: p.addr, pid: p.PID(), seq: p.seq, reply: m.reply}
	wasBroken := p.broken != nil
	if !wasBroken {
		p.broken = p.guard(m.msg, func() error {
			if p.a == nil {
				if err := p.load(); err != nil {
					return err
				}
			}
			return p.step(m.msg, rec)
		})
	}
	if p.broken != nil {
		if !wasBroken {
			p.h.log.Error("actor broken: its process is dropped", "actor", p.addr.String(), "message", m.msg.Type(), "err", p.broken)
		}
		*rec = record{addr: p.addr, pid: p.PID(), seq: p.seq, reply: m.reply, broken: true,
			err: fmt.Errorf("actor %s: %w", p.addr, p.broken)}
	}
	return rec
}

func (p *proc) load() error {
	a, err := p.h.factory(p.addr)
	if err != nil {
		return err
	}
	st, err := p.h.store.load(p.addr)
	if err != nil {
		return err
	}
	if st.found {
		if err := a.Load(st.header, st.rows); err != nil {
			return fmt.Errorf("load: %w", err)
		}
		p.stored, p.dbWake, p.dbIdle = true, st.wake, st.idle
	}
	a.Dirty() // loading is not a change
	p.a = a
	return nil
}

// guard turns a reducer's panic into an error.
func (p *proc) guard(msg actors.Message, f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("apply %s: panic: %v", msg.Type(), v)
		}
	}()
	return f()
}

// step applies msg and fills rec with what changed (actors.Commit's rule) and with
// what this host stores besides: the wake time and idleness, which recovery reads.
func (p *proc) step(msg actors.Message, rec *record) error {
	rec.effects = p.a.Apply(p.h.now(), msg)
	saved, err := actors.Commit(p.a, p.stored, rec)
	if err != nil {
		return err
	}
	rec.wake, rec.idle = p.a.Wake(), p.a.Idle()
	metaChanged := !rec.wake.Equal(p.dbWake) || rec.idle != p.dbIdle
	if saved {
		p.stored = true
	}
	if p.stored {
		rec.meta = rec.header != nil || metaChanged
		p.dbWake, p.dbIdle = rec.wake, rec.idle
	}
	rec.wakeChanged = !p.armed || !rec.wake.Equal(p.armedWake)
	p.armed, p.armedWake = true, rec.wake
	return nil
}
