package dsl_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// memJournal is the step journal in memory, as the run actor keeps it.
type memJournal struct {
	mu      sync.Mutex
	results map[string]json.RawMessage
	fails   map[string]dsl.Failure
	ends    int
}

func newJournal() *memJournal {
	return &memJournal{results: map[string]json.RawMessage{}, fails: map[string]dsl.Failure{}}
}

func (j *memJournal) Begin(_ context.Context, step string) (bool, json.RawMessage, *dsl.Failure, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if f, ok := j.fails[step]; ok {
		return true, nil, &f, nil
	}
	if r, ok := j.results[step]; ok {
		return true, r, nil, nil
	}
	return false, nil, nil, nil
}

func (j *memJournal) End(_ context.Context, step string, result json.RawMessage, f *dsl.Failure) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ends++
	if f != nil {
		j.fails[step] = *f
	} else {
		j.results[step] = result
	}
	return nil
}

func attempt(t *testing.T, j dsl.Journal) *dsl.Ctx {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &dsl.Ctx{Context: ctx, Exec: "e1", Attempt: 1, Run: "test", Journal: j}
}

type out struct {
	N    int    `json:"n"`
	Text string `json:"text"`
}

func TestStepCompletedIsNeverReExecuted(t *testing.T) {
	j := newJournal()
	calls := 0
	body := func(context.Context) (out, error) { calls++; return out{N: calls, Text: "first"}, nil }

	got1, err := dsl.Step(attempt(t, j), "build", body)
	if err != nil {
		t.Fatal(err)
	}
	// A new attempt (agent restarted) with the same journal.
	got2, err := dsl.Step(attempt(t, j), "build", body)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("body ran %d times, want 1", calls)
	}
	if got1 != got2 || got2.N != 1 || got2.Text != "first" {
		t.Fatalf("replayed result %+v, want %+v", got2, got1)
	}
}

func TestStepRecordedFailureComesBackAsTheSameTypedError(t *testing.T) {
	j := newJournal()
	calls := 0
	body := func(context.Context) (out, error) {
		calls++
		return out{}, fmt.Errorf("running tests: %w", &dsl.ExecTimeout{TimeoutSec: 600, Command: "pnpm test"})
	}
	_, err1 := dsl.Step(attempt(t, j), "exec", body)
	_, err2 := dsl.Step(attempt(t, j), "exec", body)
	if calls != 1 {
		t.Fatalf("body ran %d times, want 1", calls)
	}
	for i, err := range []error{err1, err2} {
		var et *dsl.ExecTimeout
		if !errors.As(err, &et) {
			t.Fatalf("attempt %d: error %T %v, want *dsl.ExecTimeout", i+1, err, err)
		}
		if et.TimeoutSec != 600 || et.Command != "pnpm test" {
			t.Fatalf("attempt %d: fields %+v", i+1, et)
		}
	}
	if err1.Error() != err2.Error() {
		t.Fatalf("messages differ: %q vs %q", err1, err2)
	}
}

func TestStepUntypedErrorIsRecordedAsStepFailed(t *testing.T) {
	j := newJournal()
	_, err := dsl.Step(attempt(t, j), "probe", func(context.Context) (int, error) { return 0, errors.New("connection refused") })
	var sf *dsl.StepFailed
	if !errors.As(err, &sf) || sf.Step != "probe" || sf.Cause != "connection refused" {
		t.Fatalf("got %T %+v", err, err)
	}
	if f := j.fails["probe"]; f.Tag != dsl.TagStepFailed {
		t.Fatalf("journal holds %+v", f)
	}
}

func TestStepRetriesUntilSuccess(t *testing.T) {
	j := newJournal()
	calls := 0
	v, err := dsl.Step(attempt(t, j), "flaky", func(context.Context) (int, error) {
		calls++
		if calls < 3 {
			return 0, errors.New("transient")
		}
		return 42, nil
	}, dsl.Retries(2), dsl.Backoff(time.Millisecond))
	if err != nil || v != 42 || calls != 3 {
		t.Fatalf("v=%d err=%v calls=%d", v, err, calls)
	}
	if j.ends != 1 {
		t.Fatalf("journal written %d times, want once", j.ends)
	}
}

func TestStepRetriesAreBounded(t *testing.T) {
	j := newJournal()
	calls := 0
	_, err := dsl.Step(attempt(t, j), "down", func(context.Context) (int, error) {
		calls++
		return 0, &dsl.GitHubApiError{Status: 502, Reason: "transient"}
	}, dsl.Retries(2), dsl.Backoff(time.Millisecond))
	var ge *dsl.GitHubApiError
	if !errors.As(err, &ge) || calls != 3 {
		t.Fatalf("err=%v calls=%d", err, calls)
	}
}

func TestStepTimeoutFailsTheTry(t *testing.T) {
	j := newJournal()
	start := time.Now()
	_, err := dsl.Step(attempt(t, j), "slow", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, dsl.Timeout(30*time.Millisecond))
	var sf *dsl.StepFailed
	if !errors.As(err, &sf) || !strings.Contains(sf.Cause, "timed out after 30ms") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %s", time.Since(start))
	}
}

func TestStepTimeoutKeepsATypedError(t *testing.T) {
	j := newJournal()
	_, err := dsl.Step(attempt(t, j), "exec", func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, &dsl.ExecTimeout{TimeoutSec: 1, Command: "sleep 9"}
	}, dsl.Timeout(10*time.Millisecond))
	var et *dsl.ExecTimeout
	if !errors.As(err, &et) {
		t.Fatalf("got %T %v", err, err)
	}
}

func TestStepInterruptedAttemptRecordsNothing(t *testing.T) {
	j := newJournal()
	c := attempt(t, j)
	ctx, cancel := context.WithCancel(context.Background())
	c.Context = ctx
	_, err := dsl.Step(c, "exec", func(ctx context.Context) (int, error) {
		cancel() // the edge stopped the attempt
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if j.ends != 0 {
		t.Fatalf("journal written %d times; an interrupted step must run again next attempt", j.ends)
	}
	calls := 0
	v, err := dsl.Step(attempt(t, j), "exec", func(context.Context) (int, error) { calls++; return 7, nil })
	if err != nil || v != 7 || calls != 1 {
		t.Fatalf("next attempt: v=%d err=%v calls=%d", v, err, calls)
	}
}

func TestStepNameUsedTwiceFails(t *testing.T) {
	c := attempt(t, newJournal())
	if _, err := dsl.Step(c, "a", func(context.Context) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	_, err := dsl.Step(c, "a", func(context.Context) (int, error) { return 2, nil })
	var sf *dsl.StepFailed
	if !errors.As(err, &sf) || !strings.Contains(sf.Cause, "twice") {
		t.Fatalf("got %v", err)
	}
}

func TestStepResultOverOneMiBFails(t *testing.T) {
	j := newJournal()
	_, err := dsl.Step(attempt(t, j), "big", func(context.Context) (string, error) {
		return strings.Repeat("x", dsl.MaxStepResult), nil
	})
	var sf *dsl.StepFailed
	if !errors.As(err, &sf) || !strings.Contains(sf.Cause, "limited") {
		t.Fatalf("got %v", err)
	}
	if _, ok := j.results["big"]; ok {
		t.Fatal("oversized result was recorded")
	}
}

func TestStepPanicIsAFailure(t *testing.T) {
	_, err := dsl.Step(attempt(t, newJournal()), "boom", func(context.Context) (int, error) { panic("nil map") })
	var sf *dsl.StepFailed
	if !errors.As(err, &sf) || !strings.Contains(sf.Cause, "panic: nil map") {
		t.Fatalf("got %v", err)
	}
}
