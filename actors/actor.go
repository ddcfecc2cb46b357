// Package actors holds what the three actors (admission, lease, run) share: their
// addresses, the closed set of messages they exchange, the effects a reducer may ask
// its host to perform, and the Actor interface that both hosts (the native ergo host
// and the Durable Object host) drive.
//
// Everything here and in the reducer subpackages is pure: no goroutines, no clock, no
// I/O. A host persists an actor's state before it performs the effects that Apply
// returned; since sends are not durable, every protocol heals itself on Recover and
// through periodic heartbeats that are answered with the current truth.
package actors

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Kinds of actor.
const (
	KindRun       = "run"
	KindAdmission = "admission"
	KindLease     = "lease"
)

// Addr names one actor: run/<execution>, admission/<pool>, lease/<sandbox>.
type Addr struct {
	Kind string `json:"kind"`
	Key  string `json:"key"`
}

func (a Addr) String() string { return a.Kind + "/" + a.Key }

// ParseAddr is the inverse of Addr.String.
func ParseAddr(s string) (Addr, error) {
	kind, key, ok := strings.Cut(s, "/")
	if !ok || key == "" {
		return Addr{}, fmt.Errorf("actor address %q: want kind/key", s)
	}
	switch kind {
	case KindRun, KindAdmission, KindLease:
		return Addr{Kind: kind, Key: key}, nil
	}
	return Addr{}, fmt.Errorf("actor address %q: unknown kind %q", s, kind)
}

// RunAddr, AdmissionAddr and LeaseAddr build addresses.
func RunAddr(exec string) Addr              { return Addr{KindRun, exec} }
func AdmissionAddr(pool string) Addr        { return Addr{KindAdmission, pool} }
func LeaseAddr(sandbox string) Addr         { return Addr{KindLease, sandbox} }
func (a Addr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }
func (a *Addr) UnmarshalText(b []byte) error {
	p, err := ParseAddr(string(b))
	if err != nil {
		return err
	}
	*a = p
	return nil
}

// Actor is one actor's state and behaviour as a host sees it. Implementations are the
// reducers in admission, lease and run.
//
// State is a small header plus rows (queue entries, journal entries) so that a host
// writes only what changed: re-serialising a deep queue per message is slow.
type Actor interface {
	// Apply handles one message at time now and returns the effects to perform
	// after the new state is persisted.
	Apply(now time.Time, m Message) []Effect
	// Wake is when the actor wants its one alarm (an Alarm message); zero for none.
	Wake() time.Time
	// Dirty reports what Apply changed since the last call to Dirty, and clears it:
	// whether the header changed, and the keys of changed rows.
	Dirty() (header bool, rows []string)
	// Header and Row serialise the current state; Row reports false for a deleted row.
	Header() ([]byte, error)
	Row(key string) ([]byte, bool, error)
	// Load restores state written by Header and Row.
	Load(header []byte, rows map[string][]byte) error
	// Idle reports that the actor holds nothing worth keeping in memory: a host may
	// passivate it (its state stays stored).
	Idle() bool
}

// Effect is something a reducer asks its host to do after persisting.
type Effect interface{ isEffect() }

// Send delivers Msg to another actor. Not durable: protocols heal lost sends.
type Send struct {
	To  Addr
	Msg Message
}

// Reply answers the message being applied, when its sender is waiting (a call).
type Reply struct{ Msg Message }

// StartAgent asks the sandbox port to start the agent for one attempt of an execution.
type StartAgent struct {
	Exec    string
	Run     string
	Attempt int
	Sandbox string
	Pool    string
}

// StopAgent asks the sandbox port to stop an attempt's agent (idempotent).
type StopAgent struct {
	Exec    string
	Attempt int
	Sandbox string
	Reason  string
}

// Progress tells the edge that an execution's visible status changed: the edge projects
// it to the executions table and the check-run. It is idempotent: the same Progress may
// be emitted again after a restart.
type Progress struct {
	Exec    string
	Status  Status
	At      time.Time
	Queue   *QueueInfo      // while queued for a slot
	Failure *Failure        // on failure, cancelled, timed_out
	Output  json.RawMessage // JSON run output, when the agent returned one
	Attempt int
}

// StepProgress projects one step journal change to the steps table.
type StepProgress struct {
	Exec    string
	Step    string
	Status  StepStatus
	Attempt int
	At      time.Time
	Failure *Failure
	Result  json.RawMessage
}

func (Send) isEffect()         {}
func (Reply) isEffect()        {}
func (StartAgent) isEffect()   {}
func (StopAgent) isEffect()    {}
func (Progress) isEffect()     {}
func (StepProgress) isEffect() {}

// Status is an execution's status, as the contract names them plus timed_out.
type Status string

const (
	StatusQueued    Status = "queued"
	StatusAdmitted  Status = "admitted"
	StatusLeased    Status = "leased"
	StatusRunning   Status = "running"
	StatusWaiting   Status = "waiting" // suspended: holds no slot, waits for time, children or an event
	StatusSuccess   Status = "success"
	StatusFailure   Status = "failure"
	StatusCancelled Status = "cancelled"
	StatusTimedOut  Status = "timed_out"
)

// Terminal reports whether s is final.
func (s Status) Terminal() bool {
	switch s {
	case StatusSuccess, StatusFailure, StatusCancelled, StatusTimedOut:
		return true
	}
	return false
}

// StepStatus is a journal entry's status.
type StepStatus string

const (
	StepRunning StepStatus = "running"
	StepSuccess StepStatus = "success"
	StepFailure StepStatus = "failure"
)

// QueueInfo is where a waiting execution stands in its pool's queue.
type QueueInfo struct {
	Position int       `json:"position"` // runs ahead of this one
	Busy     int       `json:"busy"`     // slots in use
	Cap      int       `json:"cap"`
	Deadline time.Time `json:"deadline"` // when the wait times out
}

// Failure is a typed error as it crosses the actors: a tag from the closed set in dsl
// (AdmissionTimedOut, ContainerBusy, AgentLost, ExecFailed, …), a message, and the
// tag's fields as JSON. The actors only create the tags they own. It has exactly the
// fields of agentapi.Failure (which dsl.Failure is): actors imports only the standard
// library, so the edge converts with a type conversion, which stops compiling if the
// two drift apart.
type Failure struct {
	Tag     string          `json:"tag"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"` // JSON object of the tag's fields
}

func (f *Failure) Error() string { return f.Tag + ": " + f.Message }

// Factory makes a fresh actor for an address; its stored state, if any, is then given
// to Load. The kinds package provides the factory for the three actors.
type Factory func(a Addr) (Actor, error)

// Changes records what Apply changed, for Dirty. Reducers embed it.
type Changes struct {
	header bool
	rows   map[string]bool
}

// MarkHeader notes that the header changed.
func (c *Changes) MarkHeader() { c.header = true }

// MarkRow notes that a row changed (or was deleted).
func (c *Changes) MarkRow(key string) {
	if c.rows == nil {
		c.rows = map[string]bool{}
	}
	c.rows[key] = true
}

// Dirty implements Actor.Dirty.
func (c *Changes) Dirty() (header bool, rows []string) {
	header = c.header
	for k := range c.rows {
		rows = append(rows, k)
	}
	c.header, c.rows = false, nil
	return header, rows
}
