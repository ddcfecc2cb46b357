package dsl_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// suspender records the suspensions an attempt asked for.
type suspender struct{ got []dsl.Suspension }

func (s *suspender) Suspend(_ context.Context, x dsl.Suspension) error {
	s.got = append(s.got, x)
	return nil
}

// waitAttempt is one attempt running WaitForEvent on the journal j.
func waitAttempt(t *testing.T, j *memJournal, timeout time.Duration) (json.RawMessage, error, *suspender) {
	t.Helper()
	c := attempt(t, j)
	s := &suspender{}
	c.Suspender = s
	raw, err := dsl.WaitForEvent(c, "approval", "approve", timeout)
	return raw, err, s
}

func TestWaitForEventSuspendsThenReturnsThePayload(t *testing.T) {
	j := newJournal()
	before := time.Now()
	_, err, s := waitAttempt(t, j, time.Hour)
	if !dsl.IsSuspended(err) || len(s.got) != 1 || s.got[0].Event != "approve" {
		t.Fatalf("first attempt: err %v, suspensions %+v", err, s.got)
	}
	if dl := s.got[0].Until; dl.Before(before.Add(time.Hour)) || dl.After(time.Now().Add(time.Hour)) {
		t.Fatalf("deadline %s is not now+1h", dl)
	}
	// Woken early without the event (a crash, say): it waits again for the same deadline.
	_, err, s2 := waitAttempt(t, j, time.Hour)
	if !dsl.IsSuspended(err) || len(s2.got) != 1 || !s2.got[0].Until.Equal(s.got[0].Until) {
		t.Fatalf("replay without event: err %v, %+v", err, s2.got)
	}
	// The run actor records the event; the resumed attempt gets its payload.
	j.End(context.Background(), dsl.EventStep("approve"), json.RawMessage(`{"by":"ada"}`), nil)
	raw, err, s3 := waitAttempt(t, j, time.Hour)
	if err != nil || string(raw) != `{"by":"ada"}` || len(s3.got) != 0 {
		t.Fatalf("after the event: %s, %v, %+v", raw, err, s3.got)
	}
	// Decided once: later attempts replay the same answer.
	raw, err, _ = waitAttempt(t, j, time.Hour)
	if err != nil || string(raw) != `{"by":"ada"}` {
		t.Fatalf("replay: %s %v", raw, err)
	}
}

// The deadline is read from the clock: synctest's fake clock passes it exactly,
// with no real waiting and no margin to tune.
func TestWaitForEventTimesOutWithApprovalTimedOut(t *testing.T) {
	synctest.Test(t, testWaitForEventTimesOut)
}

func testWaitForEventTimesOut(t *testing.T) {
	j := newJournal()
	if _, err, _ := waitAttempt(t, j, 10*time.Millisecond); !dsl.IsSuspended(err) {
		t.Fatalf("first attempt: %v", err)
	}
	time.Sleep(10*time.Millisecond - 1)
	if _, err, _ := waitAttempt(t, j, 10*time.Millisecond); !dsl.IsSuspended(err) {
		t.Fatalf("before the deadline: %v", err)
	}
	time.Sleep(1)
	_, err, s := waitAttempt(t, j, 10*time.Millisecond)
	var to *dsl.ApprovalTimedOut
	if !errors.As(err, &to) || to.EventName != "approve" || to.TimeoutMs != 10 || len(s.got) != 0 {
		t.Fatalf("after the deadline: %v (%+v)", err, s.got)
	}
	// A late event changes nothing: the timeout was recorded.
	j.End(context.Background(), dsl.EventStep("approve"), json.RawMessage(`{}`), nil)
	if _, err, _ := waitAttempt(t, j, 10*time.Millisecond); !errors.As(err, &to) {
		t.Fatalf("late event replay: %v", err)
	}
}

func TestWaitForEventSeesAnEventThatCameFirst(t *testing.T) {
	j := newJournal()
	j.End(context.Background(), dsl.EventStep("approve"), nil, nil)
	// The first attempt still suspends (the actor resumes it at once: the event is there).
	if _, err, _ := waitAttempt(t, j, time.Hour); !dsl.IsSuspended(err) {
		t.Fatalf("first attempt: %v", err)
	}
	raw, err, _ := waitAttempt(t, j, time.Hour)
	if err != nil || string(raw) != "null" {
		t.Fatalf("got %q, %v", raw, err)
	}
}

func TestWaitForEventAsRejectsAPayloadOfAnotherShape(t *testing.T) {
	j := newJournal()
	j.End(context.Background(), "approval.deadline", json.RawMessage(`{"deadline":"2999-01-01T00:00:00Z"}`), nil)
	j.End(context.Background(), dsl.EventStep("approve"), json.RawMessage(`"yes"`), nil)
	c := attempt(t, j)
	c.Suspender = &suspender{}
	_, err := dsl.WaitForEventAs[struct{ Approved bool }](c, "approval", "approve", time.Hour)
	var bad *dsl.EventPayloadInvalid
	if !errors.As(err, &bad) || bad.EventName != "approve" {
		t.Fatalf("got %v", err)
	}
}
