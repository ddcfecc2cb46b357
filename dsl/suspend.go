package dsl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// InlineSleep is the longest wait Sleep and SleepUntil spend inside the attempt; a
// longer one suspends the run (slot, lease and sandbox given back) and a new attempt
// resumes it. Both are durable: the wake time is in the journal.
const InlineSleep = 5 * time.Second

// Suspended is the error Suspend returns: the attempt is ending so the run can wait.
// The body must return it (or an error wrapping it) without doing more work; Step does
// not record it, so the step runs again in the attempt that resumes the run.
type Suspended struct{ Suspension }

func (e *Suspended) Error() string {
	var why []string
	if !e.Until.IsZero() {
		why = append(why, "until "+e.Until.UTC().Format(time.RFC3339))
	}
	if len(e.Children) > 0 {
		why = append(why, fmt.Sprintf("for %d child execution(s)", len(e.Children)))
	}
	if e.Event != "" {
		why = append(why, "for event "+e.Event)
	}
	return "run suspended " + strings.Join(why, ", ")
}

// IsSuspended reports whether err is (or wraps) a *Suspended.
func IsSuspended(err error) bool {
	var s *Suspended
	return errors.As(err, &s)
}

// Suspend ends the attempt without ending the run, which then waits (holding no
// admission slot, lease or sandbox) until s.Until, until every execution in s.Children
// has ended, or until an event of type s.Event arrives, whichever comes first. A new
// attempt then replays the journal from the start. Return the error it gives.
//
// It is the building block of Sleep, SleepUntil, fan-out (AwaitChildren) and waiting for
// events; runs rarely call it directly.
func Suspend(c *Ctx, s Suspension) error {
	if s.Until.IsZero() && len(s.Children) == 0 && s.Event == "" {
		return &StepFailed{Cause: "suspend needs a time, children or an event to wait for"}
	}
	if c.Suspender == nil {
		return &StepFailed{Cause: "this platform cannot suspend a run"}
	}
	if err := c.Suspender.Suspend(c, s); err != nil {
		return fmt.Errorf("suspend: %w", err)
	}
	c.logger().Info("run suspended", "until", s.Until, "children", len(s.Children), "event", s.Event)
	return &Suspended{s}
}

type wakeRecord struct {
	Wake time.Time `json:"wake"`
}

// Sleep waits d, durably: the wake time is recorded as the step name the first time,
// and every later attempt waits for that same time. Waits longer than InlineSleep
// suspend the run. Return its error when it is not nil (see Suspend).
func Sleep(c *Ctx, name string, d time.Duration) error {
	return sleepUntil(c, name, func() time.Time { return now(c).Add(d) })
}

// SleepUntil waits until t, durably (see Sleep).
func SleepUntil(c *Ctx, name string, t time.Time) error {
	return sleepUntil(c, name, func() time.Time { return t })
}

func sleepUntil(c *Ctx, name string, wake func() time.Time) error {
	rec, err := Step(c, name, func(context.Context) (wakeRecord, error) {
		return wakeRecord{Wake: wake().UTC()}, nil
	})
	if err != nil {
		return err
	}
	left := rec.Wake.Sub(now(c))
	switch {
	case left <= 0:
		return nil
	case left <= InlineSleep:
		t := time.NewTimer(left)
		defer t.Stop()
		select {
		case <-c.Done():
			return context.Cause(c)
		case <-t.C:
			return nil
		}
	}
	return Suspend(c, Suspension{Until: rec.Wake})
}

// now is the IO clock, or the machine's.
func now(c *Ctx) time.Time {
	if c.IO != nil {
		return c.IO.Now()
	}
	return time.Now()
}

// Now returns the time, recorded as the step name the first time so every attempt sees
// the same value.
func Now(c *Ctx, name string) (time.Time, error) {
	rec, err := Step(c, name, func(context.Context) (wakeRecord, error) { return wakeRecord{Wake: now(c).UTC()}, nil })
	return rec.Wake, err
}
