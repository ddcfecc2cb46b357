// Package run is one execution's actor: its state machine
// (queued → admitted → leased → running → success | failure | cancelled | timed_out),
// its step journal, and the liveness of its agent.
//
// The run actor, not the agent, keeps the admission slot and the lease alive: it
// heartbeats both on its alarm while it holds them, and releases both on every exit
// path, repeating the release until it is acknowledged. While it waits for a slot it
// is silent once the pool has answered its request: it accepts the pool's offer when
// its turn comes (admission's package comment has the protocol), and asks for the
// truth only when its wait is past its deadline and nobody told it so. The agent heartbeats the run actor; a silent agent
// is stopped and started again for the same execution (a new attempt, which skips the
// steps the journal already holds) a bounded number of times.
package run

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// Config holds the liveness timings.
type Config struct {
	KeepAlive   time.Duration // heartbeat period towards admission and lease
	AgentDead   time.Duration // an agent silent this long is lost (a few missed beats)
	AgentBoot   time.Duration // grace for an agent to send its first beat
	MaxAttempts int           // agent starts before the run fails with AgentLost
	MaxDuration time.Duration // default when RunStart has none
	// StartRetries is how many times a start the platform refused is tried again, after
	// StartBackoff, then twice that, …, before the run fails with SandboxStartFailed.
	StartRetries int
	StartBackoff time.Duration
}

// DefaultConfig: keep-alive every 15 s; the agent beats every 2 s and is lost after
// 10 s of silence (90 s to boot); 3 attempts; 30 min runs; a refused start is tried
// again 3 times, after 2, 4 and 8 s (a capacity blip passes; a missing class or image
// fails the run within 15 s instead of holding its slot for minutes).
func DefaultConfig() Config {
	return Config{KeepAlive: 15 * time.Second, AgentDead: 10 * time.Second, AgentBoot: 90 * time.Second,
		MaxAttempts: 3, MaxDuration: 30 * time.Minute, StartRetries: 3, StartBackoff: 2 * time.Second}
}

type header struct {
	Exec        string            `json:"exec"`
	Run         string            `json:"run"`
	Pool        string            `json:"pool"`
	Sandbox     string            `json:"sandbox"`
	Parent      string            `json:"parent,omitempty"`
	OrderKey    time.Time         `json:"orderKey,omitzero"`
	Status      actors.Status     `json:"status"`
	CreatedAt   time.Time         `json:"createdAt"`
	Deadline    time.Time         `json:"deadline"`
	MaxDuration time.Duration     `json:"maxDuration"`
	MaxAttempts int               `json:"maxAttempts"`
	Attempt     int               `json:"attempt"`
	Tries       int               `json:"tries"`  // agent starts since the last (re)queue
	Ticket      int               `json:"ticket"` // admission/lease generation: +1 per resume
	WaitUntil   time.Time         `json:"waitUntil,omitzero"`
	WaitFor     []string          `json:"waitFor,omitempty"` // children not yet ended
	WaitEvent   string            `json:"waitEvent,omitempty"`
	Children    bool              `json:"children,omitempty"` // waiting on children
	LastBeat    time.Time         `json:"lastBeat,omitzero"`
	StartFails  int               `json:"startFails,omitempty"` // refused starts in a row
	RetryAt     time.Time         `json:"retryAt,omitzero"`     // when a refused start is tried again
	HoldsSlot   bool              `json:"holdsSlot,omitempty"`
	HoldsLease  bool              `json:"holdsLease,omitempty"`
	QueuedAt    time.Time         `json:"queuedAt,omitzero"`   // when the current ticket queued
	Heard       bool              `json:"heard,omitempty"`     // the pool answered the current ticket's request
	Accepted    bool              `json:"accepted,omitempty"`  // accepted an offer, not yet confirmed
	SlotOwed    bool              `json:"slotOwed,omitempty"`  // release sent, not yet acknowledged
	LeaseOwed   bool              `json:"leaseOwed,omitempty"` // idem
	NextKeep    time.Time         `json:"nextKeep,omitzero"`
	Queue       *actors.QueueInfo `json:"queue,omitempty"`
	Failure     *actors.Failure   `json:"failure,omitempty"`
	Output      json.RawMessage   `json:"output,omitempty"`
	FinishedAt  time.Time         `json:"finishedAt,omitzero"`
}

// Step is one journal entry.
type Step struct {
	Name       string            `json:"name"`
	Status     actors.StepStatus `json:"status"`
	Attempt    int               `json:"attempt"`
	Result     json.RawMessage   `json:"result,omitempty"`
	Failure    *actors.Failure   `json:"failure,omitempty"`
	StartedAt  time.Time         `json:"startedAt"`
	FinishedAt time.Time         `json:"finishedAt,omitzero"`
}

func (s *Step) done() bool { return s.Status == actors.StepSuccess || s.Status == actors.StepFailure }

// Actor is one execution.
type Actor struct {
	actors.Changes
	cfg   Config
	h     header
	steps map[string]*Step
}

var _ actors.Actor = (*Actor)(nil)

// New returns an execution that has not started (it waits for RunStart).
func New(exec string, cfg Config) *Actor {
	return &Actor{cfg: cfg, h: header{Exec: exec}, steps: map[string]*Step{}}
}

// Apply is the whole behaviour.
func (a *Actor) Apply(now time.Time, m actors.Message) []actors.Effect {
	if a.h.Status == "" {
		if start, ok := m.(actors.RunStart); ok {
			return a.start(now, start)
		}
		return a.unstarted(m)
	}
	if t, ok := ticketOf(m); ok && t != a.h.Ticket {
		return nil // an answer about an earlier ticket: superseded
	}
	var out []actors.Effect
	switch m := m.(type) {
	case actors.RunStart, actors.RunQuery:
		out = append(out, actors.Reply{Msg: a.status(false)})
	case actors.RunCancel:
		if !a.h.Status.Terminal() {
			out = a.finish(now, actors.StatusCancelled, actors.Cancelled(m.Reason), nil)
		}
		out = append(out, actors.Reply{Msg: a.status(false)})

	case actors.AdmitQueued:
		if a.h.Status != actors.StatusQueued {
			break
		}
		if !a.h.Heard {
			a.h.Heard = true
			a.MarkHeader()
		}
		if a.h.Queue == nil || *a.h.Queue != m.Queue {
			q := m.Queue
			a.h.Queue = &q
			a.MarkHeader()
			out = append(out, a.progress(now))
		}
	case actors.AdmitGranted:
		switch {
		case a.h.Status == actors.StatusQueued && m.Confirm:
			// Our turn: accept, and start nothing until the pool confirms.
			if !a.h.Heard || !a.h.Accepted {
				a.h.Heard, a.h.Accepted = true, true
				a.MarkHeader()
			}
			out = append(out, a.toAdmission(actors.AdmitAccept{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		case a.h.Status == actors.StatusQueued:
			a.h.Status, a.h.HoldsSlot, a.h.Queue = actors.StatusAdmitted, true, nil
			a.h.Heard, a.h.Accepted = false, false
			a.MarkHeader()
			out = append(out, a.progress(now), a.toLease(actors.LeaseAcquire{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		case a.h.Status.Terminal() || a.h.Status == actors.StatusWaiting:
			// A grant that crossed our release (a late duplicate request): give it back.
			a.h.SlotOwed = true
			a.MarkHeader()
			out = append(out, a.toAdmission(actors.AdmitRelease{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		case m.Confirm:
			// We hold the slot but the pool did not get our acceptance: say it again.
			out = append(out, a.toAdmission(actors.AdmitAccept{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		}
	case actors.AdmitTimedOut:
		if a.h.Status == actors.StatusQueued {
			out = a.finish(now, actors.StatusFailure, actors.AdmissionTimedOut(m.QueuedFor, m.Position, m.Busy, m.Cap), nil)
		}
	case actors.AdmitUnknown:
		switch {
		case a.h.Status == actors.StatusQueued && a.h.Heard && !a.h.Accepted && a.h.Queue != nil && !now.Before(a.h.Queue.Deadline):
			// Our wait is over and its AdmitTimedOut was lost: end as it would have.
			q := a.h.Queue
			out = a.finish(now, actors.StatusFailure, actors.AdmissionTimedOut(now.Sub(a.queuedAt()), q.Position, q.Busy, q.Cap), nil)
		case !a.h.Status.Terminal():
			// Our entry is gone (a lost request, an offer we did not accept in time, a
			// long silence): ask again at our place.
			if a.h.Heard || a.h.Accepted {
				a.h.Heard, a.h.Accepted = false, false
				a.MarkHeader()
			}
			out = append(out, a.toAdmission(actors.AdmitRequest{Exec: a.h.Exec, Ticket: a.h.Ticket, OrderKey: a.h.OrderKey}))
		}
	case actors.AdmitReleased:
		if a.h.SlotOwed {
			a.h.SlotOwed = false
			a.MarkHeader()
			out = a.maybeResume(now, out)
		}

	case actors.LeaseGranted:
		switch {
		case a.h.Status == actors.StatusAdmitted:
			a.h.Status, a.h.HoldsLease = actors.StatusLeased, true
			out = append(out, a.progress(now))
			out = append(out, a.startAgent(now))
		case a.h.Status.Terminal() || a.h.Status == actors.StatusWaiting:
			a.h.LeaseOwed = true
			a.MarkHeader()
			out = append(out, a.toLease(actors.LeaseRelease{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		}
	case actors.LeaseBusy:
		if a.h.Status == actors.StatusAdmitted {
			out = a.finish(now, actors.StatusFailure, actors.ContainerBusy(m.Sandbox, m.Holder, m.Waited), nil)
		}
	case actors.LeaseUnknown:
		if a.h.Status == actors.StatusAdmitted || a.h.HoldsLease && !a.h.Status.Terminal() {
			out = append(out, a.toLease(actors.LeaseAcquire{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		}
	case actors.LeaseReleased:
		if a.h.LeaseOwed {
			a.h.LeaseOwed = false
			a.MarkHeader()
			out = a.maybeResume(now, out)
		}
	case actors.LeaseWaiting:

	case actors.AgentStartFailed:
		out = a.startFailed(now, m)
	case actors.AgentHeartbeat:
		out = a.fromAgent(now, m.Attempt, func() []actors.Effect {
			return []actors.Effect{actors.Reply{Msg: actors.AgentAck{Exec: a.h.Exec, OK: true}}}
		})
	case actors.StepBegin:
		out = a.fromAgent(now, m.Attempt, func() []actors.Effect { return a.stepBegin(now, m) })
	case actors.StepEnd:
		out = a.fromAgent(now, m.Attempt, func() []actors.Effect { return a.stepEnd(now, m) })
	case actors.AgentExit:
		out = a.fromAgent(now, m.Attempt, func() []actors.Effect {
			status := actors.StatusSuccess
			if m.Failure != nil {
				status = actors.StatusFailure
			}
			fx := a.finish(now, status, m.Failure, m.Output)
			return append(fx, actors.Reply{Msg: actors.AgentAck{Exec: a.h.Exec, OK: true}})
		})

	case actors.AgentSuspend:
		out = a.fromAgent(now, m.Attempt, func() []actors.Effect { return a.suspend(now, m) })
	case actors.ChildDone:
		if a.h.Status == actors.StatusWaiting {
			if i := slices.Index(a.h.WaitFor, m.Child); i >= 0 {
				a.h.WaitFor = slices.Delete(a.h.WaitFor, i, i+1)
				a.MarkHeader()
				out = a.maybeResume(now, out)
			}
		}
	case actors.ChildPoll:
		if a.h.Status.Terminal() {
			out = append(out, actors.Send{To: actors.RunAddr(m.Parent), Msg: actors.ChildDone{Exec: m.Parent, Child: a.h.Exec, Status: a.h.Status}})
		}
	case actors.RunEvent:
		out = a.event(now, m)

	case actors.Alarm:
		out = a.alarm(now)
	case actors.Recover:
		out = a.recover(now)
	}
	return out
}

func (a *Actor) start(now time.Time, m actors.RunStart) []actors.Effect {
	maxDur := m.MaxDuration
	if maxDur <= 0 {
		maxDur = a.cfg.MaxDuration
	}
	attempts := m.MaxAttempts
	if attempts <= 0 {
		attempts = a.cfg.MaxAttempts
	}
	order := m.OrderKey
	if order.IsZero() {
		order = now
	}
	a.h = header{Exec: m.Exec, Run: m.Run, Pool: m.Pool, Sandbox: m.Sandbox, Parent: m.Parent, OrderKey: order,
		Status: actors.StatusQueued, CreatedAt: now, QueuedAt: now, Deadline: now.Add(maxDur), MaxDuration: maxDur,
		MaxAttempts: attempts, NextKeep: now.Add(a.cfg.KeepAlive)}
	a.MarkHeader()
	return []actors.Effect{
		a.progress(now),
		a.toAdmission(actors.AdmitRequest{Exec: a.h.Exec, Ticket: a.h.Ticket, OrderKey: a.h.OrderKey}),
		actors.Reply{Msg: a.status(true)},
	}
}

// unstarted answers messages for an execution that was never started.
func (a *Actor) unstarted(m actors.Message) []actors.Effect {
	switch m := m.(type) {
	case actors.RunQuery, actors.RunCancel:
		return []actors.Effect{actors.Reply{Msg: actors.RunStatus{Exec: a.h.Exec}}}
	case actors.AgentHeartbeat, actors.StepEnd, actors.AgentExit:
		return []actors.Effect{actors.Reply{Msg: actors.AgentAck{Exec: a.h.Exec, Stop: true, Reason: "unknown execution"}}}
	case actors.StepBegin:
		return []actors.Effect{actors.Reply{Msg: actors.StepDecision{Exec: a.h.Exec, Step: m.Step, Stop: true}}}
	case actors.RunEvent:
		return []actors.Effect{actors.Reply{Msg: actors.RunEventAck{Exec: a.h.Exec}}}
	}
	return nil
}

// fromAgent checks that a message comes from the current attempt of a live run, counts
// it as a heartbeat, and then runs handle. Any agent message may be refused with an
// AgentAck (Stop or Superseded) instead of its usual answer.
func (a *Actor) fromAgent(now time.Time, attempt int, handle func() []actors.Effect) []actors.Effect {
	switch {
	case a.h.Status.Terminal():
		return []actors.Effect{actors.Reply{Msg: actors.AgentAck{Exec: a.h.Exec, Stop: true, Reason: string(a.h.Status)}}}
	case attempt != a.h.Attempt || (a.h.Status != actors.StatusLeased && a.h.Status != actors.StatusRunning):
		return []actors.Effect{actors.Reply{Msg: actors.AgentAck{Exec: a.h.Exec, Superseded: true, Reason: fmt.Sprintf("attempt %d is not current", attempt)}}}
	}
	// Liveness is volatile: a beat alone does not dirty the header (Recover grants a
	// fresh grace period after a restart), so heartbeats cost no write.
	a.h.LastBeat = now
	var out []actors.Effect
	if a.h.Status == actors.StatusLeased {
		a.h.Status, a.h.StartFails, a.h.RetryAt = actors.StatusRunning, 0, time.Time{}
		a.MarkHeader()
		out = append(out, a.progress(now))
	}
	return append(out, handle()...)
}

func (a *Actor) stepBegin(now time.Time, m actors.StepBegin) []actors.Effect {
	if s := a.steps[m.Step]; s != nil && s.done() {
		return []actors.Effect{actors.Reply{Msg: actors.StepDecision{Exec: a.h.Exec, Step: m.Step, Done: true, Result: s.Result, Failure: s.Failure}}}
	}
	s := &Step{Name: m.Step, Status: actors.StepRunning, Attempt: m.Attempt, StartedAt: now}
	a.steps[m.Step] = s
	a.MarkRow(m.Step)
	return []actors.Effect{
		actors.StepProgress{Exec: a.h.Exec, Step: s.Name, Status: s.Status, Attempt: s.Attempt, At: now},
		actors.Reply{Msg: actors.StepDecision{Exec: a.h.Exec, Step: m.Step}},
	}
}

func (a *Actor) stepEnd(now time.Time, m actors.StepEnd) []actors.Effect {
	ack := actors.Reply{Msg: actors.AgentAck{Exec: a.h.Exec, OK: true}}
	s := a.steps[m.Step]
	if s != nil && s.done() {
		return []actors.Effect{ack} // recorded before: the journal is append-once
	}
	if s == nil {
		s = &Step{Name: m.Step, Attempt: m.Attempt, StartedAt: now}
		a.steps[m.Step] = s
	}
	s.Status, s.Result, s.Failure, s.FinishedAt = actors.StepSuccess, m.Result, m.Failure, now
	if m.Failure != nil {
		s.Status = actors.StepFailure
	}
	a.MarkRow(m.Step)
	return []actors.Effect{
		actors.StepProgress{Exec: a.h.Exec, Step: s.Name, Status: s.Status, Attempt: s.Attempt, At: now, Failure: s.Failure, Result: s.Result},
		ack,
	}
}

// startFailed handles a start the platform refused: tried again after a backoff that
// doubles, a bounded number of times, then the run fails with SandboxStartFailed (and
// so frees its slot and lease at once). A report about another attempt, or one that
// arrives after the agent spoke, is late and changes nothing.
func (a *Actor) startFailed(now time.Time, m actors.AgentStartFailed) []actors.Effect {
	if a.h.Status != actors.StatusLeased || m.Attempt != a.h.Attempt || !a.h.RetryAt.IsZero() {
		return nil
	}
	a.h.StartFails++
	a.MarkHeader()
	if a.h.StartFails > a.cfg.StartRetries {
		return a.finish(now, actors.StatusFailure, actors.SandboxStartFailed(a.h.Sandbox, a.h.Pool, a.h.StartFails, m.Cause), nil)
	}
	a.h.RetryAt = now.Add(a.cfg.StartBackoff << (a.h.StartFails - 1))
	return nil
}

func (a *Actor) startAgent(now time.Time) actors.Effect {
	a.h.Tries++
	a.h.StartFails = 0
	return a.restartAgent(now)
}

// restartAgent starts a new attempt without counting it against MaxAttempts: a start
// the platform refused never ran, and has a bound of its own (StartRetries).
func (a *Actor) restartAgent(now time.Time) actors.Effect {
	a.h.Attempt++
	a.h.Status, a.h.LastBeat, a.h.RetryAt = actors.StatusLeased, now, time.Time{}
	a.MarkHeader()
	return actors.StartAgent{Exec: a.h.Exec, Run: a.h.Run, Attempt: a.h.Attempt, Sandbox: a.h.Sandbox, Pool: a.h.Pool}
}

func (a *Actor) alarm(now time.Time) []actors.Effect {
	var out []actors.Effect
	st := a.h.Status
	switch {
	case !st.Terminal() && !now.Before(a.h.Deadline):
		return a.finish(now, actors.StatusTimedOut, actors.RunTimedOut(a.h.MaxDuration), nil)
	case st == actors.StatusWaiting && !a.h.WaitUntil.IsZero() && !now.Before(a.h.WaitUntil):
		out = a.maybeResume(now, out)
	case st == actors.StatusLeased && !a.h.RetryAt.IsZero():
		if !now.Before(a.h.RetryAt) {
			out = append(out, a.restartAgent(now), a.progress(now))
		}
	case st == actors.StatusLeased || st == actors.StatusRunning:
		if silent := now.Sub(a.h.LastBeat); silent >= a.agentLimit() {
			out = append(out, actors.StopAgent{Exec: a.h.Exec, Attempt: a.h.Attempt, Sandbox: a.h.Sandbox, Reason: "agent stopped heartbeating"})
			if a.h.Tries >= a.h.MaxAttempts {
				return append(out, a.finish(now, actors.StatusFailure, actors.AgentLost(a.h.Tries, silent), nil)...)
			}
			out = append(out, a.startAgent(now), a.progress(now))
		}
	}
	if !now.Before(a.h.NextKeep) && (!a.quietWaiter() || !now.Before(a.pollAt())) {
		a.h.NextKeep = now.Add(a.cfg.KeepAlive)
		a.MarkHeader()
		out = append(out, a.keepAlive()...)
	}
	return out
}

// quietWaiter reports a queued run that the pool has answered and that has no offer
// to accept: it sends nothing until pollAt.
func (a *Actor) quietWaiter() bool {
	return a.h.Status == actors.StatusQueued && a.h.Heard && !a.h.Accepted
}

// pollAt is when a quiet waiter asks for the truth: a keep-alive after the deadline of
// its wait (the pool's clock may be a little behind ours), by when the pool has timed
// it out and told it so, unless that message was lost.
func (a *Actor) pollAt() time.Time {
	if a.h.Queue == nil {
		return a.h.Deadline
	}
	return a.h.Queue.Deadline.Add(a.cfg.KeepAlive)
}

// queuedAt is when the current ticket queued (state stored before the field existed
// has only the creation time).
func (a *Actor) queuedAt() time.Time {
	if a.h.QueuedAt.IsZero() {
		return a.h.CreatedAt
	}
	return a.h.QueuedAt
}

// keepAlive heartbeats whatever the run holds, asks the pool whatever a queued run
// has not heard, and repeats releases that were not acknowledged.
func (a *Actor) keepAlive() []actors.Effect {
	var out []actors.Effect
	if a.h.Status == actors.StatusQueued {
		switch {
		case !a.h.Heard:
			out = append(out, a.toAdmission(actors.AdmitRequest{Exec: a.h.Exec, Ticket: a.h.Ticket, OrderKey: a.h.OrderKey}))
		case a.h.Accepted:
			out = append(out, a.toAdmission(actors.AdmitAccept{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		default:
			out = append(out, a.toAdmission(actors.AdmitHeartbeat{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		}
		return out
	}
	if a.h.Status.Terminal() || a.h.Status == actors.StatusWaiting {
		for _, c := range a.h.WaitFor {
			out = append(out, actors.Send{To: actors.RunAddr(c), Msg: actors.ChildPoll{Exec: c, Parent: a.h.Exec}})
		}
		if a.h.SlotOwed {
			out = append(out, a.toAdmission(actors.AdmitRelease{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		}
		if a.h.LeaseOwed {
			out = append(out, a.toLease(actors.LeaseRelease{Exec: a.h.Exec, Ticket: a.h.Ticket}))
		}
		return out
	}
	out = append(out, a.toAdmission(actors.AdmitHeartbeat{Exec: a.h.Exec, Ticket: a.h.Ticket}))
	if a.h.Status != actors.StatusQueued {
		out = append(out, a.toLease(actors.LeaseHeartbeat{Exec: a.h.Exec, Ticket: a.h.Ticket}))
	}
	return out
}

// recover re-sends what may have been lost between persist and send.
func (a *Actor) recover(now time.Time) []actors.Effect {
	out := []actors.Effect{a.progress(now)}
	names := make([]string, 0, len(a.steps))
	for n := range a.steps {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		s := a.steps[n]
		out = append(out, actors.StepProgress{Exec: a.h.Exec, Step: s.Name, Status: s.Status, Attempt: s.Attempt, At: s.StartedAt, Failure: s.Failure, Result: s.Result})
	}
	switch a.h.Status {
	case actors.StatusQueued:
		out = append(out, a.toAdmission(actors.AdmitRequest{Exec: a.h.Exec, Ticket: a.h.Ticket, OrderKey: a.h.OrderKey}))
	case actors.StatusAdmitted:
		out = append(out, a.toAdmission(actors.AdmitHeartbeat{Exec: a.h.Exec, Ticket: a.h.Ticket}), a.toLease(actors.LeaseAcquire{Exec: a.h.Exec, Ticket: a.h.Ticket}))
	case actors.StatusLeased, actors.StatusRunning:
		// The agent may have died with the host: give it one fresh grace period to beat.
		a.h.LastBeat = now
		out = append(out, a.toAdmission(actors.AdmitHeartbeat{Exec: a.h.Exec, Ticket: a.h.Ticket}), a.toLease(actors.LeaseHeartbeat{Exec: a.h.Exec, Ticket: a.h.Ticket}))
	default:
		out = append(out, a.keepAlive()...)
	}
	return out
}

// finish ends the execution: stop the agent, release slot and lease (until
// acknowledged), and report the result.
func (a *Actor) finish(now time.Time, st actors.Status, f *actors.Failure, output json.RawMessage) []actors.Effect {
	var out []actors.Effect
	prev := a.h.Status
	if prev == actors.StatusLeased || prev == actors.StatusRunning {
		out = append(out, actors.StopAgent{Exec: a.h.Exec, Attempt: a.h.Attempt, Sandbox: a.h.Sandbox, Reason: string(st)})
	}
	a.h.Status, a.h.Failure, a.h.Output, a.h.FinishedAt, a.h.Queue = st, f, output, now, nil
	a.h.WaitFor, a.h.WaitEvent, a.h.WaitUntil, a.h.Children = nil, "", time.Time{}, false
	if a.h.Parent != "" {
		out = append(out, actors.Send{To: actors.RunAddr(a.h.Parent), Msg: actors.ChildDone{Exec: a.h.Parent, Child: a.h.Exec, Status: st}})
	}
	// Every state but a timed-out admission has an admission entry to drop; releasing
	// an unknown entry is harmless, so always release.
	if prev != actors.StatusWaiting { // a waiting run released both when it suspended
		out = a.release(now, prev, out)
	}
	a.h.NextKeep = now.Add(a.cfg.KeepAlive)
	a.MarkHeader()
	return append(out, a.progress(now))
}

// release gives slot and lease back, repeating until acknowledged. Every state but a
// timed-out admission has an admission entry to drop; releasing an unknown entry is
// harmless, so always release the slot.
func (a *Actor) release(now time.Time, prev actors.Status, out []actors.Effect) []actors.Effect {
	a.h.SlotOwed, a.h.HoldsSlot = true, false
	out = append(out, a.toAdmission(actors.AdmitRelease{Exec: a.h.Exec, Ticket: a.h.Ticket}))
	if prev != actors.StatusQueued {
		a.h.LeaseOwed, a.h.HoldsLease = true, false
		out = append(out, a.toLease(actors.LeaseRelease{Exec: a.h.Exec, Ticket: a.h.Ticket}))
	}
	return out
}

// suspend ends the attempt without ending the run: slot and lease go back and the run
// waits for its condition, then queues again.
func (a *Actor) suspend(now time.Time, m actors.AgentSuspend) []actors.Effect {
	out := []actors.Effect{actors.StopAgent{Exec: a.h.Exec, Attempt: a.h.Attempt, Sandbox: a.h.Sandbox, Reason: "suspended"}}
	out = a.release(now, a.h.Status, out)
	a.h.Status = actors.StatusWaiting
	a.h.WaitUntil, a.h.WaitEvent, a.h.Children = m.Until, m.Event, m.Children != nil
	a.h.WaitFor = slices.Clone(m.Children)
	a.h.NextKeep = now.Add(a.cfg.KeepAlive)
	a.MarkHeader()
	for _, c := range a.h.WaitFor { // children that already ended answer at once
		out = append(out, actors.Send{To: actors.RunAddr(c), Msg: actors.ChildPoll{Exec: c, Parent: a.h.Exec}})
	}
	out = append(out, a.progress(now), actors.Reply{Msg: actors.AgentAck{Exec: a.h.Exec, OK: true}})
	return a.maybeResume(now, out)
}

// maybeResume queues a waiting run again, at its original place, once its condition
// holds and its releases are acknowledged (so a late release cannot free the new slot).
func (a *Actor) maybeResume(now time.Time, out []actors.Effect) []actors.Effect {
	if a.h.Status != actors.StatusWaiting || a.h.SlotOwed || a.h.LeaseOwed {
		return out
	}
	ready := !a.h.WaitUntil.IsZero() && !now.Before(a.h.WaitUntil) ||
		a.h.Children && len(a.h.WaitFor) == 0 ||
		a.h.WaitEvent != "" && a.eventRecorded(a.h.WaitEvent)
	if !ready {
		return out
	}
	a.h.Ticket++
	a.h.Tries, a.h.StartFails = 0, 0
	a.h.Status, a.h.QueuedAt, a.h.Heard, a.h.Accepted = actors.StatusQueued, now, false, false
	a.h.WaitUntil, a.h.WaitFor, a.h.WaitEvent, a.h.Children = time.Time{}, nil, "", false
	a.MarkHeader()
	return append(out, a.progress(now), a.toAdmission(actors.AdmitRequest{Exec: a.h.Exec, Ticket: a.h.Ticket, OrderKey: a.h.OrderKey}))
}

// event records the first event of a type in the journal and wakes a run waiting for it.
func (a *Actor) event(now time.Time, m actors.RunEvent) []actors.Effect {
	ack := actors.RunEventAck{Exec: a.h.Exec, Status: a.h.Status}
	name := actors.EventStep(m.Kind)
	switch {
	case a.h.Status.Terminal():
		return []actors.Effect{actors.Reply{Msg: ack}}
	case a.eventRecorded(m.Kind):
		ack.Duplicate = true
		return []actors.Effect{actors.Reply{Msg: ack}}
	}
	s := &Step{Name: name, Status: actors.StepSuccess, Attempt: a.h.Attempt, Result: m.Payload, StartedAt: now, FinishedAt: now}
	a.steps[name] = s
	a.MarkRow(name)
	ack.Delivered = true
	out := []actors.Effect{
		actors.StepProgress{Exec: a.h.Exec, Step: name, Status: s.Status, Attempt: s.Attempt, At: now, Result: s.Result},
		actors.Reply{Msg: ack},
	}
	return a.maybeResume(now, out)
}

// eventRecorded reports that an event of type t is in the journal. An agent's
// StepBegin on the event step leaves a running entry, which is not an event.
func (a *Actor) eventRecorded(t string) bool {
	s := a.steps[actors.EventStep(t)]
	return s != nil && s.done()
}

// ticketOf reads the ticket of admission and lease answers.
func ticketOf(m actors.Message) (int, bool) {
	switch m := m.(type) {
	case actors.AdmitQueued:
		return m.Ticket, true
	case actors.AdmitGranted:
		return m.Ticket, true
	case actors.AdmitTimedOut:
		return m.Ticket, true
	case actors.AdmitReleased:
		return m.Ticket, true
	case actors.AdmitUnknown:
		return m.Ticket, true
	case actors.LeaseGranted:
		return m.Ticket, true
	case actors.LeaseBusy:
		return m.Ticket, true
	case actors.LeaseReleased:
		return m.Ticket, true
	case actors.LeaseUnknown:
		return m.Ticket, true
	case actors.LeaseWaiting:
		return m.Ticket, true
	}
	return 0, false
}

func (a *Actor) progress(now time.Time) actors.Progress {
	p := actors.Progress{Exec: a.h.Exec, Status: a.h.Status, At: now, Failure: a.h.Failure, Output: a.h.Output, Attempt: a.h.Attempt}
	if a.h.Queue != nil {
		q := *a.h.Queue
		p.Queue = &q
	}
	return p
}

func (a *Actor) status(created bool) actors.RunStatus {
	return actors.RunStatus{Exec: a.h.Exec, Status: a.h.Status, Attempt: a.h.Attempt, Created: created, Queue: a.h.Queue, Failure: a.h.Failure}
}

func (a *Actor) agentLimit() time.Duration {
	if a.h.Status == actors.StatusLeased {
		return a.cfg.AgentBoot
	}
	return a.cfg.AgentDead
}

func (a *Actor) toAdmission(m actors.Message) actors.Effect {
	return actors.Send{To: actors.AdmissionAddr(a.h.Pool), Msg: m}
}

func (a *Actor) toLease(m actors.Message) actors.Effect {
	return actors.Send{To: actors.LeaseAddr(a.h.Sandbox), Msg: m}
}

// Wake implements actors.Actor: the earliest of the deadline, the keep-alive and the
// agent's liveness limit; after the end, only while a release is unacknowledged.
func (a *Actor) Wake() time.Time {
	switch {
	case a.h.Status == "":
		return time.Time{}
	case a.h.Status.Terminal():
		if a.h.SlotOwed || a.h.LeaseOwed {
			return a.h.NextKeep
		}
		return time.Time{}
	}
	w := a.h.NextKeep
	if a.quietWaiter() && a.pollAt().After(w) {
		w = a.pollAt() // a waiter costs nothing, not even its own alarm, until then
	}
	if a.h.Deadline.Before(w) {
		w = a.h.Deadline
	}
	// A wait that is over but blocked on unacknowledged releases wakes for the
	// keep-alive (which repeats them), not at its past wake time again and again.
	if a.h.Status == actors.StatusWaiting && !a.h.WaitUntil.IsZero() && a.h.WaitUntil.Before(w) && !a.h.SlotOwed && !a.h.LeaseOwed {
		w = a.h.WaitUntil
	}
	if a.h.Status == actors.StatusLeased && !a.h.RetryAt.IsZero() && a.h.RetryAt.Before(w) {
		w = a.h.RetryAt
	}
	if a.h.Status == actors.StatusLeased || a.h.Status == actors.StatusRunning {
		if d := a.h.LastBeat.Add(a.agentLimit()); d.Before(w) {
			w = d
		}
	}
	return w
}

// Idle implements actors.Actor: nothing left to do once the end is acknowledged.
func (a *Actor) Idle() bool {
	return a.h.Status == "" || a.h.Status.Terminal() && !a.h.SlotOwed && !a.h.LeaseOwed
}

// Status is the execution's status; Steps its journal; Attempt the current attempt.
func (a *Actor) Status() actors.Status { return a.h.Status }
func (a *Actor) Attempt() int          { return a.h.Attempt }
func (a *Actor) Sandbox() string       { return a.h.Sandbox }
func (a *Actor) Pool() string          { return a.h.Pool }
func (a *Actor) Failure() *actors.Failure {
	return a.h.Failure
}

// OrderKey is the execution's place in its pool's FIFO (children inherit it).
func (a *Actor) OrderKey() time.Time { return a.h.OrderKey }

// Queue is where the run last heard it stands in its pool's queue (nil when not queued).
func (a *Actor) Queue() *actors.QueueInfo { return a.h.Queue }

// Ticket is the current admission/lease generation.
func (a *Actor) Ticket() int { return a.h.Ticket }

// Owes reports releases sent but not yet acknowledged.
func (a *Actor) Owes() (slot, lease bool) { return a.h.SlotOwed, a.h.LeaseOwed }

// Step returns a journal entry.
func (a *Actor) Step(name string) (Step, bool) {
	s, ok := a.steps[name]
	if !ok {
		return Step{}, false
	}
	return *s, true
}

// Header implements actors.Actor.
func (a *Actor) Header() ([]byte, error) { return json.Marshal(a.h) }

// Row implements actors.Actor: one row per journal entry.
func (a *Actor) Row(key string) ([]byte, bool, error) {
	s := a.steps[key]
	if s == nil {
		return nil, false, nil
	}
	b, err := json.Marshal(s)
	return b, true, err
}

// Load implements actors.Actor.
func (a *Actor) Load(h []byte, rows map[string][]byte) error {
	if len(h) > 0 {
		if err := json.Unmarshal(h, &a.h); err != nil {
			return fmt.Errorf("run %s header: %w", a.h.Exec, err)
		}
	}
	a.steps = map[string]*Step{}
	for k, b := range rows {
		s := &Step{}
		if err := json.Unmarshal(b, s); err != nil {
			return fmt.Errorf("run %s step %s: %w", a.h.Exec, k, err)
		}
		a.steps[k] = s
	}
	return nil
}
