package dsl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
)

// Step limits and defaults.
const (
	// MaxStepResult is the largest result a step may record (its JSON).
	MaxStepResult = 1 << 20
	// DefaultStepTimeout bounds one try of a step without a Timeout option.
	DefaultStepTimeout = 10 * time.Minute
	// DefaultBackoff is the wait before the first retry; it doubles for each next one.
	DefaultBackoff = 5 * time.Second
	maxBackoff     = 5 * time.Minute
	// abandonAfter is how long a try that ignores its context is waited for once its
	// timeout has passed.
	abandonAfter = 5 * time.Second
)

// StepOption tunes one step.
type StepOption func(*stepOptions)

type stepOptions struct {
	retries int
	timeout time.Duration
	backoff time.Duration
}

// Retries lets a failed step run again up to n more times, with exponential backoff.
// Every failure is retried except the attempt itself stopping.
func Retries(n int) StepOption { return func(o *stepOptions) { o.retries = max(0, n) } }

// Timeout bounds each try of the step (default DefaultStepTimeout; 0 means no bound).
func Timeout(d time.Duration) StepOption { return func(o *stepOptions) { o.timeout = d } }

// Backoff sets the wait before the first retry (default DefaultBackoff).
func Backoff(d time.Duration) StepOption { return func(o *stepOptions) { o.backoff = d } }

// Step is one durable checkpoint. It asks the journal first: a step that completed in
// an earlier attempt is not run again, and its recorded result (or its recorded
// failure, rebuilt as the same typed error) is returned. Otherwise fn runs, with
// retries and a per-try timeout, and its result (at most MaxStepResult bytes of JSON)
// or failure is recorded.
//
// An error that is not of the typed set is recorded as *StepFailed naming the step; the
// error returned is always the one rebuilt from the record, so the body sees the same
// error now and on replay. When the attempt itself stops (c is cancelled) or the run
// suspends inside the step (a *Suspended error, see Suspend), nothing is recorded and
// the step runs again in the next attempt.
//
// Names must be unique within a run. Never return secrets from a step: results are
// stored.
func Step[T any](c *Ctx, name string, fn func(ctx context.Context) (T, error), opts ...StepOption) (T, error) {
	// The work is done by step, which is not generic: one copy of it serves every
	// result type (a generic body was stenciled once per type shape, ~10 KB of wasm each).
	var v T
	got, err := step(c, name, func(ctx context.Context) (any, error) {
		r, err := fn(ctx)
		return r, err
	}, &v, opts)
	if err != nil {
		var zero T
		return zero, err
	}
	if got != nil { // a fresh result; on replay step decoded into v
		v = got.(T)
	}
	return v, nil
}

// step runs or replays one step. A replayed result is decoded into out (a *T); a fresh
// one is returned as it came from fn.
func step(c *Ctx, name string, fn func(ctx context.Context) (any, error), out any, opts []StepOption) (any, error) {
	o := stepOptions{timeout: DefaultStepTimeout, backoff: DefaultBackoff}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case name == "":
		return nil, &StepFailed{Cause: "a step needs a name"}
	case c.Journal == nil:
		return nil, &StepFailed{Step: name, Cause: "no journal"}
	case !c.claimStep(name):
		return nil, &StepFailed{Step: name, Cause: "step name used twice in one run"}
	}
	log := c.logger().With("step", name)

	done, recorded, f, err := c.Journal.Begin(c, name)
	if err != nil {
		return nil, fmt.Errorf("step %s: journal: %w", name, err)
	}
	if done {
		log.Debug("step replayed from the journal")
		if f != nil {
			return nil, FromFailure(*f)
		}
		if len(recorded) > 0 {
			if err := json.Unmarshal(recorded, out); err != nil {
				return nil, &StepFailed{Step: name, Cause: "recorded result does not decode: " + err.Error()}
			}
		}
		return nil, nil
	}

	start := time.Now()
	log.Info("step started")
	v, err := tryStep(c, name, fn, o)
	var result json.RawMessage
	if err == nil {
		result, err = json.Marshal(v)
		switch {
		case err != nil:
			err = &StepFailed{Step: name, Cause: "result does not encode as JSON: " + err.Error()}
		case len(result) > MaxStepResult:
			err = &StepFailed{Step: name, Cause: fmt.Sprintf("result is %d bytes; a step result is limited to %d", len(result), MaxStepResult)}
		}
	}
	if err != nil {
		if c.Err() != nil || IsSuspended(err) {
			log.Info("step interrupted; the attempt is stopping", "err", err)
			return nil, err
		}
		fail := stepFailure(name, err)
		log.Info("step failed", "tag", fail.Tag, "durationMs", time.Since(start).Milliseconds())
		if err := c.Journal.End(c, name, nil, &fail); err != nil {
			return nil, fmt.Errorf("step %s: journal: %w", name, err)
		}
		return nil, FromFailure(fail)
	}
	if err := c.Journal.End(c, name, result, nil); err != nil {
		return nil, fmt.Errorf("step %s: journal: %w", name, err)
	}
	log.Info("step done", "durationMs", time.Since(start).Milliseconds())
	return v, nil
}

// stepFailure is the Failure recorded for a step's error.
func stepFailure(name string, err error) Failure {
	var sf *StepFailed
	if errors.As(err, &sf) && sf.Step == "" {
		cp := *sf
		cp.Step = name
		return cp.Failure()
	}
	var t TypedError
	if errors.As(err, &t) {
		return t.Failure()
	}
	return (&StepFailed{Step: name, Cause: err.Error()}).Failure()
}

// tryStep runs fn up to 1+retries times.
func tryStep(c *Ctx, name string, fn func(ctx context.Context) (any, error), o stepOptions) (any, error) {
	wait := o.backoff
	for try := 0; ; try++ {
		v, err := tryOnce(c, name, fn, o.timeout)
		if err == nil {
			return v, nil
		}
		if c.Err() != nil || try >= o.retries || IsSuspended(err) {
			return nil, err
		}
		c.logger().Info("step try failed; retrying", "step", name, "try", try+1, "in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-c.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}

type outcome struct {
	v   any
	err error
}

// tryOnce runs fn once under the timeout. A panic becomes an error. A try that ignores
// its context past the timeout is abandoned after abandonAfter.
func tryOnce(c *Ctx, name string, fn func(ctx context.Context) (any, error), timeout time.Duration) (any, error) {
	ctx, cancel := context.Context(c), context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(c, timeout)
	}
	defer cancel()
	ch := make(chan outcome, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				c.logger().Error("step panicked", "step", name, "panic", p, "stack", string(debug.Stack()))
				ch <- outcome{err: fmt.Errorf("panic: %v", p)}
			}
		}()
		v, err := fn(ctx)
		ch <- outcome{v, err}
	}()
	var r outcome
	select {
	case r = <-ch:
	case <-ctx.Done():
		t := time.NewTimer(abandonAfter)
		select {
		case r = <-ch:
			t.Stop()
		case <-t.C:
			r = outcome{err: ctx.Err()}
		}
	}
	if r.err != nil && c.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		var t TypedError
		if !errors.As(r.err, &t) {
			return nil, &StepFailed{Step: name, Cause: fmt.Sprintf("timed out after %s: %v", timeout, r.err)}
		}
	}
	return r.v, r.err
}
