package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// Storage is one Durable Object's storage as the actor host uses it. On Cloudflare it
// is the object's SQLite database (ctx.storage.sql) and its alarm; tests use a map.
type Storage interface {
	// Load returns what Save stored; ok is false when the object holds no actor yet.
	Load() (s Stored, ok bool, err error)
	// Save writes one transition atomically.
	Save(c Change) error
	// SetAlarm schedules the object's one alarm at t, or deletes it when t is zero.
	// The write is issued before SetAlarm returns, so successive calls keep their
	// order; wait reports its outcome.
	SetAlarm(t time.Time) (wait func(context.Context) error)
}

// Stored is an actor's durable state.
type Stored struct {
	Addr   actors.Addr
	Header []byte
	Rows   map[string][]byte
}

// Change is what one Apply changed (actors.Commit), for the actor at Addr.
type Change struct {
	Addr actors.Addr
	actors.Change
}

// Transport delivers a message to another actor (a Durable Object stub fetch on
// Cloudflare). A send is a cast: not durable, never answered; protocols heal.
type Transport interface {
	Send(ctx context.Context, from, to actors.Addr, m actors.Message) error
}

// Effects performs what a reducer asks of the outside world besides messages to
// actors: actors.StartAgent, StopAgent, Progress and StepProgress. The Worker passes
// edge/effectqueue's Queue, which performs them with the edge's Perform. Handle is
// called inside the delivery, with the object locked, right after the transition that
// produced e was saved: the effects of one actor arrive in the order its transitions
// were persisted, and Handle must return at once (queue the work).
type Effects interface {
	Handle(from actors.Addr, e actors.Effect)
}

// ErrNoActor is returned by Host.Deliver for an alarm on an object that stores no actor.
var ErrNoActor = errors.New("durable object holds no actor")

// Host drives actors.Actor reducers inside Durable Objects: one Go value per live
// Durable Object, keyed by a random id the JavaScript object chose, loaded from the
// object's storage on its first message and freed when the JavaScript object is
// garbage collected (FinalizationRegistry) or when the actor is idle.
//
// For each message: load if not cached (delivering actors.Recover first when the
// loaded actor has work in progress), Apply, persist what Dirty reports
// (actors.Commit), hand the non-message effects to Effects, move the alarm to Wake,
// and only then send: actors.Send through the Transport, actors.Reply as the answer
// of Deliver.
//
// Apply and Save run without waiting on JavaScript, so on the single-threaded js/wasm
// runtime no other message for the same object can interleave; a mutex keeps that
// true on native test runs too.
type Host struct {
	factory   actors.Factory
	transport Transport
	effects   Effects
	now       func() time.Time
	log       *slog.Logger

	mu      sync.Mutex
	objects map[string]*object
	bg      sync.WaitGroup
}

// HostOptions configure a Host; zero fields get defaults.
type HostOptions struct {
	Effects Effects          // nil: non-message effects are dropped
	Now     func() time.Time // default time.Now
	Logger  *slog.Logger     // default slog.Default()
}

// NewHost returns a host for the actors factory makes.
func NewHost(factory actors.Factory, transport Transport, opt HostOptions) *Host {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Host{factory: factory, transport: transport, effects: opt.Effects, now: opt.Now, log: opt.Logger,
		objects: map[string]*object{}}
}

// object is one Durable Object's actor.
type object struct {
	mu     sync.Mutex
	key    string
	store  Storage
	addr   actors.Addr  // zero until known
	actor  actors.Actor // nil until loaded, and after passivation or a failure
	saved  bool         // storage holds this actor (its address and a header)
	idle   bool         // dropped from memory because Idle: reload without Recover
	alarm  time.Time    // the alarm last written
	armed  bool         // alarm is known to match storage
	ctx    context.Context
	cancel context.CancelFunc
}

// Deliver applies m to the actor of the Durable Object known as key (its storage is
// store) and returns the actors.Reply it produced, or nil. to is the address the
// message was sent to. The state is durable and the other effects are queued before
// Deliver returns; sends are started and proceed in the background.
func (h *Host) Deliver(key string, store Storage, to actors.Addr, m actors.Message) (actors.Message, error) {
	return h.deliver(key, store, to, m)
}

// Alarm delivers actors.Alarm to the actor of the Durable Object known as key,
// whose address comes from storage when the actor is not in memory. An object
// that stores no actor gets its alarm deleted and ErrNoActor.
func (h *Host) Alarm(key string, store Storage) error {
	_, err := h.deliver(key, store, actors.Addr{}, actors.Alarm{})
	return err
}

// Free forgets the Durable Object known as key and cancels its sends in flight.
// It is called when the JavaScript object has been garbage collected.
func (h *Host) Free(key string) {
	h.mu.Lock()
	o := h.objects[key]
	delete(h.objects, key)
	h.mu.Unlock()
	if o != nil {
		o.cancel()
	}
}

// Len reports how many Durable Objects the host holds.
func (h *Host) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.objects)
}

// Wait blocks until the sends started so far, and those they caused, are done.
// Tests use it; the Worker never waits.
func (h *Host) Wait() { h.bg.Wait() }

func (h *Host) object(key string, store Storage) *object {
	h.mu.Lock()
	defer h.mu.Unlock()
	o := h.objects[key]
	if o == nil {
		ctx, cancel := context.WithCancel(context.Background())
		o = &object{key: key, store: store, ctx: ctx, cancel: cancel}
		h.objects[key] = o
	}
	return o
}

// step is the synchronous half of a delivery: what must happen before sends.
type step struct {
	from    actors.Addr
	effects []actors.Effect // Recover's first, then the message's
	replyAt int             // effects[replyAt:] belong to the message
	alarm   func(context.Context) error
}

func (h *Host) deliver(key string, store Storage, to actors.Addr, m actors.Message) (actors.Message, error) {
	o := h.object(key, store)
	st, err := h.apply(o, to, m)
	if errors.Is(err, ErrNoActor) {
		h.log.Warn("alarm on an object without an actor: alarm deleted", "object", key)
		if err := store.SetAlarm(time.Time{})(o.ctx); err != nil {
			h.log.Error("delete alarm", "object", key, "err", err)
		}
	}
	if err != nil {
		return nil, err
	}
	if st.alarm != nil {
		if err := st.alarm(o.ctx); err != nil {
			// The state is durable; a lost alarm is healed by the next message.
			h.log.Error("set alarm", "actor", st.from.String(), "err", err)
		}
	}
	return h.perform(o, st), nil
}

// apply loads the actor if needed, applies m and persists the result.
func (h *Host) apply(o *object, to actors.Addr, m actors.Message) (st step, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("actor %s: apply %s: panic: %v", o.addr, m.Type(), v)
		}
		if err != nil {
			// Memory may be ahead of storage: the next message reloads.
			o.actor, o.armed = nil, false
		}
	}()
	recovering := false
	if o.actor == nil {
		if recovering, err = h.load(o, to); err != nil {
			return st, err
		}
	}
	if to != (actors.Addr{}) && to != o.addr {
		return st, fmt.Errorf("message %s for %s delivered to the object of %s", m.Type(), to, o.addr)
	}
	st.from = o.addr
	if recovering {
		fx, err := h.step(o, actors.Recover{})
		if err != nil {
			return st, err
		}
		st.effects = fx
	}
	st.replyAt = len(st.effects)
	fx, err := h.step(o, m)
	if err != nil {
		return st, err
	}
	st.effects = append(st.effects, fx...)
	// Queued before the lock is released, so two deliveries' effects (two goroutines
	// natively; two events interleaved at an await on js/wasm) reach Effects in the
	// order their transitions were saved: a late "running" cannot overwrite "success".
	h.handOver(st)
	if wake := o.actor.Wake(); !o.armed || !wake.Equal(o.alarm) {
		st.alarm = o.store.SetAlarm(wake)
		o.alarm, o.armed = wake, true
	}
	o.idle = o.actor.Idle() && o.actor.Wake().IsZero()
	if o.idle {
		o.actor = nil // passivate: storage keeps it
	}
	return st, nil
}

// load restores o's actor from storage, or creates it for to. It reports whether the
// actor must be sent actors.Recover first: it was stored with work in progress and
// this host did not passivate it, so the object restarted (the runtime died, or the
// object was evicted) and sends may have been lost between persist and send.
func (h *Host) load(o *object, to actors.Addr) (recovering bool, err error) {
	s, ok, err := o.store.Load()
	if err != nil {
		return false, fmt.Errorf("load actor %s: %w", to, err)
	}
	addr := to
	switch {
	case ok && to != (actors.Addr{}) && s.Addr != to:
		return false, fmt.Errorf("object of %s got a message for %s", s.Addr, to)
	case ok:
		addr = s.Addr
	case to == (actors.Addr{}):
		return false, ErrNoActor
	}
	a, err := h.factory(addr)
	if err != nil {
		return false, err
	}
	if ok {
		if err := a.Load(s.Header, s.Rows); err != nil {
			return false, fmt.Errorf("load actor %s: %w", addr, err)
		}
	}
	a.Dirty() // loading is not a change
	o.addr, o.actor, o.saved = addr, a, ok
	return ok && !o.idle && (!a.Idle() || !a.Wake().IsZero()), nil
}

// step applies one message and persists what changed.
func (h *Host) step(o *object, m actors.Message) ([]actors.Effect, error) {
	fx := o.actor.Apply(h.now(), m)
	saved, err := actors.Commit(o.actor, o.saved, objectSaver{o})
	if err != nil {
		return nil, fmt.Errorf("actor %s: save after %s: %w", o.addr, m.Type(), err)
	}
	if saved {
		o.saved = true
	}
	return fx, nil
}

// objectSaver is an object's storage as actors.Commit writes to it.
type objectSaver struct{ o *object }

func (s objectSaver) Save(c actors.Change) error {
	return s.o.store.Save(Change{Addr: s.o.addr, Change: c})
}

// handOver gives the delivery's non-message effects to Effects, in order.
func (h *Host) handOver(st step) {
	for _, e := range st.effects {
		switch e.(type) {
		case actors.Send, actors.Reply:
		default:
			if h.effects == nil {
				h.log.Debug("effect dropped: no handler", "actor", st.from.String(), "effect", fmt.Sprintf("%T", e))
				continue
			}
			h.effects.Handle(st.from, e)
		}
	}
}

// perform starts the sends of one delivery and returns the message's reply.
func (h *Host) perform(o *object, st step) actors.Message {
	var reply actors.Message
	for i, e := range st.effects {
		switch e := e.(type) {
		case actors.Reply:
			if i >= st.replyAt && reply == nil {
				reply = e.Msg
			}
		case actors.Send:
			h.bg.Add(1)
			go func() {
				defer h.bg.Done()
				if err := h.transport.Send(o.ctx, st.from, e.To, e.Msg); err != nil {
					// Sends are not durable: the protocols heal (heartbeats, Recover).
					h.log.Warn("actor send failed", "from", st.from.String(), "to", e.To.String(), "message", e.Msg.Type(), "err", err)
				}
			}()
		}
	}
	return reply
}
