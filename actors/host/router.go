package host

import (
	"time"

	"ergo.services/ergo/act"
	"ergo.services/ergo/gen"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// Messages the router handles besides deliver.
type (
	// committed is a batch the writer made durable: forward its sends, re-arm alarms,
	// passivate idle actors.
	committed []*record
	// recoverAll lists the actors to load and send actors.Recover on start.
	recoverAll []actors.Addr
	// alarmFired is an actor's timer; stale unless seq is the actor's current one.
	alarmFired struct {
		to  actors.Addr
		seq uint64
	}
	// shutdown stops routing; the channel is closed once the router is quiet.
	shutdown chan struct{}
)

// router is the one process that spawns actor processes and sends to them.
type router struct {
	act.Actor
	h        *Host
	live     map[actors.Addr]*entry
	alarms   map[actors.Addr]*alarm
	alarmSeq uint64
	stopped  bool
}

// entry is a live actor process and the number of messages sent to it.
type entry struct {
	pid  gen.PID
	sent uint64
}

// alarm is an actor's one timer. It stays after firing (cancel nil) so that a record
// repeating the same wake time does not fire it again.
type alarm struct {
	at     time.Time
	seq    uint64
	cancel gen.CancelFunc
}

func (r *router) Init(args ...any) error {
	r.h = args[0].(*Host)
	r.live = map[actors.Addr]*entry{}
	r.alarms = map[actors.Addr]*alarm{}
	return nil
}

func (r *router) HandleMessage(from gen.PID, message any) error {
	switch m := message.(type) {
	case deliver:
		r.deliver(m.to, m.msg, m.reply)
	case committed:
		for _, rec := range m {
			r.committed(rec)
		}
	case alarmFired:
		if a := r.alarms[m.to]; a != nil && a.seq == m.seq && a.cancel != nil {
			a.cancel = nil
			r.deliver(m.to, actors.Alarm{}, nil)
		}
	case recoverAll:
		for _, to := range m {
			r.deliver(to, actors.Recover{}, nil)
		}
	case shutdown:
		r.stopped = true
		for _, a := range r.alarms {
			if a.cancel != nil {
				a.cancel()
			}
		}
		close(m)
	}
	return nil
}

// deliver hands msg to the actor's process, spawning one if it has none.
func (r *router) deliver(to actors.Addr, msg actors.Message, reply chan<- result) {
	if r.stopped {
		if reply != nil {
			reply <- result{err: ErrStopped}
		}
		return
	}
	e := r.live[to]
	if e == nil {
		pid, err := r.Spawn(func() gen.ProcessBehavior { return &proc{} }, gen.ProcessOptions{}, r.h, to)
		if err != nil {
			r.h.log.Error("spawn actor", "actor", to.String(), "err", err)
			if reply != nil {
				reply <- result{err: err}
			}
			return
		}
		e = &entry{pid: pid}
		r.live[to] = e
	}
	e.sent++
	if err := r.Send(e.pid, delivery{msg: msg, reply: reply}); err != nil {
		// Only the router stops actor processes, so this is the node going down.
		r.h.log.Warn("deliver to actor", "actor", to.String(), "message", msg.Type(), "err", err)
		delete(r.live, to)
		if reply != nil {
			reply <- result{err: err}
		}
	}
}

// committed acts on one durable record, in commit order.
func (r *router) committed(rec *record) {
	for _, e := range rec.effects {
		if s, ok := e.(actors.Send); ok {
			r.deliver(s.To, s.Msg, nil)
		}
	}
	if rec.wakeChanged {
		r.arm(rec.addr, rec.wake)
	}
	if rec.lost && r.alarms[rec.addr] != nil {
		// The message was not stored, perhaps the alarm's own: the actor's durable
		// wake may be due with no timer left. An early alarm is a no-op for reducers,
		// so fire one again soon; its own record re-arms the real wake.
		r.arm(rec.addr, r.h.now().Add(lostAlarmRetry))
	}
	e := r.live[rec.addr]
	if e == nil || e.pid != rec.pid {
		return // a record of a process already dropped
	}
	quiet := e.sent == rec.seq // nothing sent to the process after this message
	if rec.broken || quiet && rec.idle && !r.h.opt.KeepIdle {
		delete(r.live, rec.addr)
		_ = r.Send(e.pid, passivate{})
	}
}

// lostAlarmRetry is when an actor whose record was lost gets an alarm again.
const lostAlarmRetry = time.Second

// arm replaces the actor's alarm with one at wake (none if zero).
func (r *router) arm(to actors.Addr, wake time.Time) {
	a := r.alarms[to]
	if a != nil && a.at.Equal(wake) {
		return
	}
	if a != nil && a.cancel != nil {
		a.cancel()
	}
	if wake.IsZero() || r.stopped {
		delete(r.alarms, to)
		return
	}
	if a == nil {
		a = &alarm{}
		r.alarms[to] = a
	}
	r.alarmSeq++
	a.at, a.seq, a.cancel = wake, r.alarmSeq, nil
	cancel, err := r.SendAfter(r.PID(), alarmFired{to: to, seq: a.seq}, max(wake.Sub(r.h.now()), 0))
	if err != nil {
		r.h.log.Error("arm alarm", "actor", to.String(), "err", err)
		return
	}
	a.cancel = cancel
}
