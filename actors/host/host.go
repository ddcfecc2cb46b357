// Package host is the native host for the pure reducers in actors: each actor runs as
// an ergo 3.1.0 process, and its state lives in SQLite (WAL, synchronous=FULL).
//
// Routing. Exactly one process, the router, spawns actor processes and sends to them.
// Host.Send, Host.Call, alarms and the actors' own actors.Send effects all reach an
// actor through the router, which keeps the table from address to process and spawns a
// process on demand (loading header and rows from storage) when a message arrives for
// an address that has none. Because nothing else ever sends to an actor process,
// ergo's race between publishing a spawned process and a concurrent send to it cannot
// occur, and ergo names are not registered at all: a passivating process would still
// hold its name while its successor starts.
//
// Persist before effects. An actor process applies one message at a time, serialises
// what Dirty reports (header, changed rows, wake time) into a record and hands it to
// the single writer. The writer commits many actors' records in one transaction
// (group commit), and only then performs their effects in commit order: replies go to
// waiting callers, sends go back to the router, the rest go to the EffectHandler. An
// actor keeps applying while its records wait for the commit, so a busy actor (a pool's
// admission queue) is not limited to one message per fsync.
//
// Alarms. The router owns one timer per actor, armed from each committed record's wake
// time, so an alarm re-spawns a passivated actor. On Open every stored actor that has
// a wake time or is not idle is loaded and sent actors.Recover first; its alarm is
// armed from the record that Recover produces (an overdue one fires at once).
//
// Passivation. The router counts what it sent to each process; a committed record says
// how many messages the process had applied and whether the actor was idle. When the
// two counts match, no message is in flight, the state is durable, and the router drops
// the process from its table before telling it to stop: no message can be lost to
// passivation.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"ergo.services/ergo"
	"ergo.services/ergo/gen"
	"ergo.services/ergo/node"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// EffectHandler performs the effects that are not actor messages.
type EffectHandler interface {
	// Handle performs a non-actor effect (actors.StartAgent, StopAgent, Progress,
	// StepProgress) after the state that produced it is durable. It runs on the
	// host's writer, so it must not block for long, and must not wait for Host.Call.
	Handle(from actors.Addr, e actors.Effect)
}

// Options tune the host; the zero value is ready to use.
type Options struct {
	// MaxBatch caps the actor transitions committed in one transaction (default 1024).
	MaxBatch int
	// MaxDelay is how long the writer waits for a batch to fill once it has one
	// transition (default 0: commit what is queued; what arrives meanwhile forms
	// the next batch).
	MaxDelay time.Duration
	// KeepIdle keeps idle actors in memory instead of passivating them.
	KeepIdle bool
	// Logger receives the host's and ergo's warnings and errors (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock handed to reducers and used to arm alarms (default time.Now).
	Now func() time.Time
	// CommitRetry is how long a failing commit (a full disk) is retried with backoff
	// before its batch fails (default 10 s): its callers get an error wrapping
	// ErrStorage, its effects are dropped, and its actors reload their last durable
	// state. While commits keep failing each batch gets one try, so callers learn at
	// once; the first success ends that.
	CommitRetry time.Duration
	// OnCommitError, if set, is told of each failed commit; when it returns true it
	// has freed space (the stack's emergency reserve) and the commit is retried at once.
	OnCommitError func(error) bool
}

// ErrStorage wraps the error of a commit that failed past Options.CommitRetry.
var ErrStorage = errors.New("actor state could not be stored")

// ErrStopped is returned once Stop has begun.
var ErrStopped = errors.New("actor host stopped")

// ErrNoReply is actors.ErrNoReply: Call returns it when the reducer produced no Reply.
var ErrNoReply = actors.ErrNoReply

// Host runs actors. It is safe for concurrent use.
type Host struct {
	factory actors.Factory
	fx      EffectHandler
	opt     Options
	log     *slog.Logger
	store   *store
	node    gen.Node
	router  gen.PID

	stopping atomic.Bool
	stopOnce sync.Once
	stopErr  error
}

// result answers a Call.
type result struct {
	msg actors.Message
	err error
}

// deliver asks the router to hand msg to an actor; reply is set for a Call.
type deliver struct {
	to    actors.Addr
	msg   actors.Message
	reply chan<- result
}

var nodeSeq atomic.Int64

// Open starts a host on the SQLite database at dbPath (created if missing) and
// recovers every stored actor that has a wake time or is not idle.
func Open(ctx context.Context, dbPath string, factory actors.Factory, fx EffectHandler, opt Options) (*Host, error) {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 1024
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.CommitRetry <= 0 {
		opt.CommitRetry = 10 * time.Second
	}
	h := &Host{factory: factory, fx: fx, opt: opt, log: opt.Logger}
	st, err := openStore(ctx, dbPath, opt)
	if err != nil {
		return nil, err
	}
	h.store = st
	toRecover, err := st.recoverable(ctx)
	if err != nil {
		st.close()
		return nil, err
	}

	// node.Start rather than ergo.StartNode: the latter adds ergo's system
	// application, whose supervisor re-spawns its children while StopForce kills
	// them (a data race in ergo) and which reports usage metrics over the network.
	// Networking is off: this node only hosts local actors. ergo's own log goes to
	// slog at warning and above. The node name only has to be unique in this process.
	name := gen.Atom(fmt.Sprintf("flare-host-%d@localhost", nodeSeq.Add(1)))
	n, err := node.Start(name, gen.NodeOptions{
		Network: gen.NetworkOptions{Mode: gen.NetworkModeDisabled},
		Log: gen.LogOptions{
			Level:         gen.LogLevelWarning,
			DefaultLogger: gen.DefaultLoggerOptions{Disable: true},
			Loggers:       []gen.Logger{{Name: "slog", Logger: ergoLog{opt.Logger}}},
		},
	}, ergo.FrameworkVersion)
	if err != nil {
		st.close()
		return nil, fmt.Errorf("start ergo node: %w", err)
	}
	h.node = n
	// ergo's cron timer reads its own handle without synchronisation when it first
	// fires (a data race in ergo 3.1.0 that -race reports for any node alive at a
	// minute boundary). A job pushed onto its spool now gives that read a
	// happens-before edge (the spool is an atomic queue); the job does nothing.
	_ = n.Cron().AddJob(gen.CronJob{Name: "flare_host_noop", Spec: "* * * * *", Action: noopCron{}})
	h.router, err = n.Spawn(func() gen.ProcessBehavior { return &router{} }, gen.ProcessOptions{}, h)
	if err == nil {
		// Recover goes first: nothing else can reach the router before Open returns.
		err = n.Send(h.router, toRecover)
	}
	if err != nil {
		n.StopForce()
		st.close()
		return nil, fmt.Errorf("start router: %w", err)
	}
	go st.run(h.dispatch)
	return h, nil
}

// Send delivers m to the actor at to, spawning it if needed; it does not wait.
func (h *Host) Send(to actors.Addr, m actors.Message) error {
	if h.stopping.Load() {
		return ErrStopped
	}
	if err := h.node.Send(h.router, deliver{to: to, msg: m}); err != nil {
		return fmt.Errorf("send %s to %s: %w: %w", m.Type(), to, ErrStopped, err)
	}
	return nil
}

// Call delivers m to the actor at to and waits for the actors.Reply it produces,
// which is returned once the actor's new state is durable.
func (h *Host) Call(ctx context.Context, to actors.Addr, m actors.Message) (actors.Message, error) {
	if h.stopping.Load() {
		return nil, ErrStopped
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reply := make(chan result, 1)
	if err := h.node.Send(h.router, deliver{to: to, msg: m, reply: reply}); err != nil {
		return nil, fmt.Errorf("call %s on %s: %w: %w", m.Type(), to, ErrStopped, err)
	}
	select {
	case r := <-reply:
		return r.msg, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-h.store.dead:
		// The writer is gone: whatever was not answered by now never will be.
		select {
		case r := <-reply:
			return r.msg, r.err
		default:
			return nil, ErrStopped
		}
	}
}

// Stop refuses new work, stops the router (no more spawns, alarms cancelled), kills
// the actor processes, lets the writer commit what is already queued unless ctx ends
// first, and closes the database. It never waits for work in flight to finish: what
// is not committed is lost, as in a crash, and recovered on the next Open.
func (h *Host) Stop(ctx context.Context) error {
	h.stopOnce.Do(func() {
		h.stopping.Store(true)
		done := make(chan struct{})
		// High priority: the router takes it before the work queued in its mailbox.
		if h.node.SendWithPriority(h.router, shutdown(done), gen.MessagePriorityHigh) == nil {
			select {
			case <-done:
			case <-ctx.Done():
			case <-time.After(time.Second): // the router is stuck: stop anyway
			}
		}
		// node.Stop waits for every process and hangs if one is spawned meanwhile;
		// the router spawns no more, and StopForce does not wait.
		h.node.StopForce()
		h.stopErr = h.store.stop(ctx)
	})
	return h.stopErr
}

func (h *Host) now() time.Time { return h.opt.Now() }

// Health is nil while commits succeed, else the last commit's error (wrapping
// ErrStorage once a batch has failed for it): the stack reports itself degraded.
func (h *Host) Health() error {
	if e := h.store.failing.Load(); e != nil {
		return *e
	}
	return nil
}

// dispatch performs a committed batch's effects, in commit order. It runs on the
// writer goroutine. The router gets the batch first, so that whatever a reply or an
// agent causes reaches the router after the batch's own sends and passivations.
func (h *Host) dispatch(batch []*record) {
	for _, r := range batch {
		if r.broken || r.wakeChanged || r.idle || len(r.effects) > 0 {
			// The router forwards the sends, re-arms alarms and passivates idle actors.
			_ = h.node.Send(h.router, committed(batch))
			break
		}
	}
	for _, r := range batch {
		if r.err != nil {
			if r.reply != nil {
				r.reply <- result{err: r.err}
			}
			continue
		}
		replied := false
		for _, e := range r.effects {
			switch e := e.(type) {
			case actors.Send:
			case actors.Reply:
				if r.reply != nil && !replied {
					r.reply <- result{msg: e.Msg}
					replied = true
				}
			default:
				if h.fx != nil {
					h.fx.Handle(r.addr, e)
				}
			}
		}
		if r.reply != nil && !replied {
			r.reply <- result{err: fmt.Errorf("%s: %w", r.addr, ErrNoReply)}
		}
	}
}

type noopCron struct{}

func (noopCron) Do(gen.Atom, gen.Node, time.Time) error { return nil }
func (noopCron) Info() string                           { return "no-op" }

// ergoLog forwards ergo's log to slog.
type ergoLog struct{ l *slog.Logger }

func (e ergoLog) Log(m gen.MessageLog) {
	level := slog.LevelWarn
	if m.Level >= gen.LogLevelError {
		level = slog.LevelError
	}
	e.l.Log(context.Background(), level, fmt.Sprintf(m.Format, m.Args...), "source", "ergo")
}

func (ergoLog) Terminate() {}
