package actors

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// Message is everything the actors exchange: the set is closed by the registry in
// this file (Unmarshal knows exactly these). Each message has a stable type tag because messages cross into JavaScript on
// Cloudflare (see Marshal).
type Message interface{ Type() string }

// ---- admission (one actor per pool) ----
//
// Every admission and lease message carries the run's Ticket: it goes up each time a
// suspended run queues again, so a late release or grant of an earlier ticket can
// never be mistaken for the current one.

// AdmitRequest asks for a slot in the pool (idempotent). OrderKey places the request
// in the FIFO; a fan-out child passes its parent's so it keeps the parent's place.
// Zero means now.
type AdmitRequest struct {
	Exec     string    `json:"exec"`
	Ticket   int       `json:"ticket,omitempty"`
	OrderKey time.Time `json:"orderKey,omitzero"`
}

// AdmitHeartbeat keeps a holder alive; it is answered with the current truth
// (AdmitQueued or AdmitGranted, or AdmitUnknown when the entry is gone). Waiters do not
// heartbeat: a queued run sends one only to learn the truth (its request was not
// answered, or its wait is past its deadline).
type AdmitHeartbeat struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// AdmitRelease frees the slot or leaves the queue; answered with AdmitReleased.
type AdmitRelease struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// AdmitQueued reports the waiter's queue position (sent when it changes).
type AdmitQueued struct {
	Exec   string    `json:"exec"`
	Ticket int       `json:"ticket,omitempty"`
	Queue  QueueInfo `json:"queue"`
}

// AdmitGranted tells the run it holds a slot. With Confirm it is an offer: the slot is
// held for the run until it answers AdmitAccept (within the pool's AckTTL, else the
// next waiter gets it), and the run starts nothing before it is confirmed by an
// AdmitGranted without Confirm. State stored before offers existed granted without
// Confirm at once; a queued run still takes such a grant.
type AdmitGranted struct {
	Exec    string `json:"exec"`
	Ticket  int    `json:"ticket,omitempty"`
	Confirm bool   `json:"confirm,omitempty"`
}

// AdmitAccept accepts an offered slot (idempotent); answered with the current truth
// (AdmitGranted once admitted, AdmitUnknown when the offer was withdrawn).
type AdmitAccept struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// AdmitTimedOut tells the waiter it waited too long and has left the queue.
type AdmitTimedOut struct {
	Exec      string        `json:"exec"`
	Ticket    int           `json:"ticket,omitempty"`
	QueuedFor time.Duration `json:"queuedFor"`
	Position  int           `json:"position"`
	Busy      int           `json:"busy"`
	Cap       int           `json:"cap"`
}

// AdmitReleased acknowledges AdmitRelease.
type AdmitReleased struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// AdmitUnknown answers a heartbeat from an execution the pool does not know (its
// entry expired): the run asks again or gives up.
type AdmitUnknown struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// ---- lease (one actor per sandbox id) ----

// LeaseAcquire asks for the sandbox (idempotent); answered with LeaseGranted at once or
// when the holder releases, or LeaseBusy after the wait limit.
type LeaseAcquire struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// LeaseHeartbeat keeps a holder or waiter alive; answered with the current truth.
type LeaseHeartbeat struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// LeaseRelease gives the sandbox up or stops waiting; answered with LeaseReleased.
type LeaseRelease struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

type LeaseGranted struct {
	Exec    string `json:"exec"`
	Ticket  int    `json:"ticket,omitempty"`
	Sandbox string `json:"sandbox"`
}

type LeaseBusy struct {
	Exec    string        `json:"exec"`
	Ticket  int           `json:"ticket,omitempty"`
	Sandbox string        `json:"sandbox"`
	Holder  string        `json:"holder"`
	Waited  time.Duration `json:"waited"`
}

type LeaseReleased struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

type LeaseUnknown struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
}

// LeaseWaiting answers a waiter's heartbeat while another execution holds the sandbox.
type LeaseWaiting struct {
	Exec   string `json:"exec"`
	Ticket int    `json:"ticket,omitempty"`
	Holder string `json:"holder"`
}

// ---- run (one actor per execution) ----

// RunStart creates the execution (idempotent: a second start is answered with the
// current status and changes nothing).
type RunStart struct {
	Exec        string        `json:"exec"`
	Run         string        `json:"run"`
	Pool        string        `json:"pool"`
	Sandbox     string        `json:"sandbox"`
	Parent      string        `json:"parent,omitempty"`
	OrderKey    time.Time     `json:"orderKey,omitzero"` // the parent's, for fan-out children
	MaxDuration time.Duration `json:"maxDuration"`
	MaxAttempts int           `json:"maxAttempts"` // agent starts before the run fails; 0 = default
}

// RunStatus answers RunStart and RunQuery.
type RunStatus struct {
	Exec    string     `json:"exec"`
	Status  Status     `json:"status"`
	Attempt int        `json:"attempt"`
	Created bool       `json:"created"` // this RunStart created the execution
	Queue   *QueueInfo `json:"queue,omitempty"`
	Failure *Failure   `json:"failure,omitempty"`
}

// RunQuery asks for RunStatus.
type RunQuery struct {
	Exec string `json:"exec"`
}

// RunCancel cancels the execution (idempotent; no effect once terminal).
type RunCancel struct {
	Exec   string `json:"exec"`
	Reason string `json:"reason"`
}

// AgentHeartbeat is the agent saying it is alive; answered with AgentAck.
type AgentHeartbeat struct {
	Exec    string `json:"exec"`
	Attempt int    `json:"attempt"`
}

// AgentStartFailed reports that the sandbox port could not start an attempt's agent
// (the platform said so: a missing Container class, an image pull failure, the
// instance limit; locally, an agent binary that would not run). The edge sends it as
// soon as the start fails, so the run does not wait out the agent's boot grace.
type AgentStartFailed struct {
	Exec    string `json:"exec"`
	Attempt int    `json:"attempt"`
	Cause   string `json:"cause"`
}

// AgentAck answers the agent's messages. Superseded means this attempt is no longer
// the current one (the agent must stop); Stop means the run is over (cancelled or
// timed out).
type AgentAck struct {
	Exec       string `json:"exec"`
	OK         bool   `json:"ok"`
	Superseded bool   `json:"superseded,omitempty"`
	Stop       bool   `json:"stop,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// StepBegin asks whether a step should run: answered with StepDecision.
type StepBegin struct {
	Exec    string `json:"exec"`
	Attempt int    `json:"attempt"`
	Step    string `json:"step"`
}

// StepDecision: Done means the step completed before (in any attempt) and its
// recorded Result or Failure is returned instead of running it again.
type StepDecision struct {
	Exec       string          `json:"exec"`
	Step       string          `json:"step"`
	Done       bool            `json:"done"`
	Result     json.RawMessage `json:"result,omitempty"`
	Failure    *Failure        `json:"failure,omitempty"`
	Superseded bool            `json:"superseded,omitempty"`
	Stop       bool            `json:"stop,omitempty"`
}

// StepEnd records a step's result or typed failure in the journal; answered with AgentAck.
type StepEnd struct {
	Exec    string          `json:"exec"`
	Attempt int             `json:"attempt"`
	Step    string          `json:"step"`
	Result  json.RawMessage `json:"result,omitempty"`
	Failure *Failure        `json:"failure,omitempty"`
}

// AgentExit ends the attempt: the run body returned (Failure nil) or failed.
type AgentExit struct {
	Exec    string          `json:"exec"`
	Attempt int             `json:"attempt"`
	Output  json.RawMessage `json:"output,omitempty"`
	Failure *Failure        `json:"failure,omitempty"`
}

// AgentSuspend ends the attempt without ending the run: the run gives its slot and
// lease back (a waiting parent holds nothing, so ADMISSION_CAP=1 cannot deadlock) and
// waits until Until, until every execution in Children has ended, or until an event
// of type Event has arrived, whichever comes first (zero values: not a condition).
// Then it queues again, at its original place, for a new attempt that replays the
// journal. Answered with AgentAck.
type AgentSuspend struct {
	Exec     string    `json:"exec"`
	Attempt  int       `json:"attempt"`
	Until    time.Time `json:"until,omitzero"`
	Children []string  `json:"children,omitempty"`
	Event    string    `json:"event,omitempty"`
}

// ChildDone tells a parent execution that one of its children ended. Children send it
// when they end and whenever the parent polls them (ChildPoll), so it heals.
type ChildDone struct {
	Exec   string `json:"exec"` // the parent
	Child  string `json:"child"`
	Status Status `json:"status"`
}

// ChildPoll asks a child to send ChildDone to Parent if it has ended.
type ChildPoll struct {
	Exec   string `json:"exec"` // the child
	Parent string `json:"parent"`
}

// RunEvent delivers an external event (admin approval, …) to the execution. The first
// event of a type is recorded in the journal as the step "event:<type>" with the
// payload as its result; later ones of the same type are Duplicates and change nothing.
// Answered with RunEventAck.
type RunEvent struct {
	Exec    string          `json:"exec"`
	Kind    string          `json:"type"` // the event's type`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// RunEventAck answers RunEvent.
type RunEventAck struct {
	Exec      string `json:"exec"`
	Delivered bool   `json:"delivered"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Status    Status `json:"status"`
}

// EventStep is the journal step under which an event of type t is recorded.
func EventStep(t string) string { return "event:" + t }

// ---- every actor ----

// Alarm is the actor's one timer firing.
type Alarm struct{}

// Recover is delivered once when a host loads an actor from storage after a restart:
// the actor re-sends whatever may have been lost between persist and send.
type Recover struct{}

func (AdmitRequest) Type() string     { return "admission.request" }
func (AdmitHeartbeat) Type() string   { return "admission.heartbeat" }
func (AdmitRelease) Type() string     { return "admission.release" }
func (AdmitAccept) Type() string      { return "admission.accept" }
func (AdmitQueued) Type() string      { return "admission.queued" }
func (AdmitGranted) Type() string     { return "admission.granted" }
func (AdmitTimedOut) Type() string    { return "admission.timed_out" }
func (AdmitReleased) Type() string    { return "admission.released" }
func (AdmitUnknown) Type() string     { return "admission.unknown" }
func (LeaseAcquire) Type() string     { return "lease.acquire" }
func (LeaseHeartbeat) Type() string   { return "lease.heartbeat" }
func (LeaseRelease) Type() string     { return "lease.release" }
func (LeaseGranted) Type() string     { return "lease.granted" }
func (LeaseBusy) Type() string        { return "lease.busy" }
func (LeaseReleased) Type() string    { return "lease.released" }
func (LeaseUnknown) Type() string     { return "lease.unknown" }
func (LeaseWaiting) Type() string     { return "lease.waiting" }
func (RunStart) Type() string         { return "run.start" }
func (RunStatus) Type() string        { return "run.status" }
func (RunQuery) Type() string         { return "run.query" }
func (RunCancel) Type() string        { return "run.cancel" }
func (AgentHeartbeat) Type() string   { return "agent.heartbeat" }
func (AgentAck) Type() string         { return "agent.ack" }
func (AgentStartFailed) Type() string { return "agent.start_failed" }
func (StepBegin) Type() string        { return "step.begin" }
func (StepDecision) Type() string     { return "step.decision" }
func (StepEnd) Type() string          { return "step.end" }
func (AgentExit) Type() string        { return "agent.exit" }
func (AgentSuspend) Type() string     { return "agent.suspend" }
func (ChildDone) Type() string        { return "run.child_done" }
func (ChildPoll) Type() string        { return "run.child_poll" }
func (RunEvent) Type() string         { return "run.event" }
func (RunEventAck) Type() string      { return "run.event_ack" }
func (Alarm) Type() string            { return "alarm" }
func (Recover) Type() string          { return "recover" }

// messageTypes maps each tag to its Go type; Unmarshal uses it.
var messageTypes = map[string]reflect.Type{}

func init() {
	for _, m := range []Message{
		AdmitRequest{}, AdmitHeartbeat{}, AdmitRelease{}, AdmitAccept{}, AdmitQueued{}, AdmitGranted{},
		AdmitTimedOut{}, AdmitReleased{}, AdmitUnknown{},
		LeaseAcquire{}, LeaseHeartbeat{}, LeaseRelease{}, LeaseGranted{}, LeaseBusy{},
		LeaseReleased{}, LeaseUnknown{}, LeaseWaiting{},
		RunStart{}, RunStatus{}, RunQuery{}, RunCancel{},
		AgentHeartbeat{}, AgentAck{}, AgentStartFailed{}, StepBegin{}, StepDecision{}, StepEnd{}, AgentExit{},
		AgentSuspend{}, ChildDone{}, ChildPoll{}, RunEvent{}, RunEventAck{},
		Alarm{}, Recover{},
	} {
		messageTypes[m.Type()] = reflect.TypeOf(m)
	}
}

type envelope struct {
	Type string          `json:"type"`
	Body json.RawMessage `json:"body"`
}

// Marshal encodes a message as {"type": tag, "body": {...}}.
func Marshal(m Message) ([]byte, error) {
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", m.Type(), err)
	}
	return json.Marshal(envelope{Type: m.Type(), Body: body})
}

// Unmarshal decodes what Marshal wrote, as the value type reducers switch on.
func Unmarshal(b []byte) (Message, error) {
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("message envelope: %w", err)
	}
	t, ok := messageTypes[e.Type]
	if !ok {
		return nil, fmt.Errorf("message type %q: unknown", e.Type)
	}
	p := reflect.New(t)
	if len(e.Body) > 0 && string(e.Body) != "null" {
		if err := json.Unmarshal(e.Body, p.Interface()); err != nil {
			return nil, fmt.Errorf("message %s: %w", e.Type, err)
		}
	}
	return p.Elem().Interface().(Message), nil
}
