package dsl

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventStep is the journal step under which the run actor records the first event of
// type t (actors.EventStep; the edge's POST /v1/admin/events/:id delivers them).
func EventStep(t string) string { return "event:" + t }

type deadlineRecord struct {
	Deadline time.Time `json:"deadline"`
}

// WaitForEvent waits, durably, for an event of eventType delivered to this execution
// (POST /v1/admin/events/:id with {"type": eventType, "payload": …}) and returns its
// payload ("null" when it had none). When no event arrives within timeout it fails with
// *ApprovalTimedOut. Return its error when it is not nil: while waiting, the run is
// suspended (it holds no admission slot, lease or sandbox) and the error is a
// *Suspended ending this attempt; the attempt that resumes the run replays the journal
// and gets here again.
//
// name is a step name of the run (the outcome is recorded under it, and the deadline
// under name+".deadline"), so the wait is decided once: a replay after the timeout
// still fails even if the event came later, and a replay after the event still sees
// it. The first event of a type is the decision; later ones are refused (409).
func WaitForEvent(c *Ctx, name, eventType string, timeout time.Duration) (json.RawMessage, error) {
	if eventType == "" {
		return nil, &StepFailed{Step: name, Cause: "WaitForEvent needs an event type"}
	}
	if c.Journal == nil {
		return nil, &StepFailed{Step: name, Cause: "no journal"}
	}
	dlName := name + ".deadline"
	if name == "" || !c.claimStep(name) || !c.claimStep(dlName) {
		return nil, &StepFailed{Step: name, Cause: "step name empty or used twice in one run"}
	}

	// The deadline, fixed by the first attempt that gets here.
	done, raw, _, err := c.Journal.Begin(c, dlName)
	if err != nil {
		return nil, fmt.Errorf("step %s: journal: %w", dlName, err)
	}
	if !done {
		dl := deadlineRecord{Deadline: now(c).Add(timeout).UTC()}
		b, _ := json.Marshal(dl)
		if err := c.Journal.End(c, dlName, b, nil); err != nil {
			return nil, fmt.Errorf("step %s: journal: %w", dlName, err)
		}
		// First time here: wait at once. An event that came before is already in the
		// journal, and the run actor resumes the run straight away.
		return nil, Suspend(c, Suspension{Until: dl.Deadline, Event: eventType})
	}
	var dl deadlineRecord
	if err := json.Unmarshal(raw, &dl); err != nil {
		return nil, &StepFailed{Step: dlName, Cause: "recorded deadline does not decode: " + err.Error()}
	}

	// The outcome, if an earlier attempt decided it.
	done, raw, f, err := c.Journal.Begin(c, name)
	if err != nil {
		return nil, fmt.Errorf("step %s: journal: %w", name, err)
	}
	if done {
		if f != nil {
			return nil, FromFailure(*f)
		}
		return raw, nil
	}

	// Decide it now: the event if it came, else the timeout once the deadline passed.
	done, payload, _, err := c.Journal.Begin(c, EventStep(eventType))
	if err != nil {
		return nil, fmt.Errorf("step %s: journal: %w", EventStep(eventType), err)
	}
	if done {
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		if err := c.Journal.End(c, name, payload, nil); err != nil {
			return nil, fmt.Errorf("step %s: journal: %w", name, err)
		}
		return payload, nil
	}
	if !now(c).Before(dl.Deadline) {
		fail := (&ApprovalTimedOut{EventName: eventType, TimeoutMs: timeout.Milliseconds()}).Failure()
		if err := c.Journal.End(c, name, nil, &fail); err != nil {
			return nil, fmt.Errorf("step %s: journal: %w", name, err)
		}
		return nil, FromFailure(fail)
	}
	return nil, Suspend(c, Suspension{Until: dl.Deadline, Event: eventType})
}

// WaitForEventAs is WaitForEvent with the payload decoded into T; a payload of another
// shape fails with *EventPayloadInvalid.
func WaitForEventAs[T any](c *Ctx, name, eventType string, timeout time.Duration) (T, error) {
	var v T
	raw, err := WaitForEvent(c, name, eventType, timeout)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, &EventPayloadInvalid{EventName: eventType, Reason: err.Error()}
	}
	return v, nil
}
