package effectqueue

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// describe names an effect in the tests' expected sequences.
func describe(e actors.Effect) string {
	switch e := e.(type) {
	case actors.StartAgent:
		return "start " + e.Exec
	case actors.Progress:
		if e.Queue != nil {
			return fmt.Sprintf("progress %s %s at %d", e.Exec, e.Status, e.Queue.Position)
		}
		return fmt.Sprintf("progress %s %s", e.Exec, e.Status)
	case actors.StepProgress:
		return fmt.Sprintf("step %s %s %s", e.Exec, e.Step, e.Status)
	}
	return fmt.Sprintf("%T", e)
}

// performed records what the queue performed, in order.
type performed struct {
	mu   sync.Mutex
	list []string
}

func (p *performed) add(s string) {
	p.mu.Lock()
	p.list = append(p.list, s)
	p.mu.Unlock()
}

func (p *performed) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.list...)
}

func TestQueueKeepsEachExecutionsOrderWithFewWorkers(t *testing.T) {
	const workers, perExec = 3, 300
	execs := []string{"a", "b", "c", "d", "e", "f"}
	var mu sync.Mutex
	got := map[string][]int{}
	inFlight := map[string]bool{}
	running, maxRunning := 0, 0
	q := New(func(ctx context.Context, from actors.Addr, e actors.Effect) {
		p := e.(actors.Progress)
		mu.Lock()
		if inFlight[p.Exec] {
			t.Errorf("%s: two effects performed at once", p.Exec)
		}
		inFlight[p.Exec] = true
		running++
		maxRunning = max(maxRunning, running)
		mu.Unlock()
		runtime.Gosched() // let another worker overtake, if the queue allowed it
		mu.Lock()
		got[p.Exec] = append(got[p.Exec], p.Attempt)
		inFlight[p.Exec] = false
		running--
		mu.Unlock()
	}, Options{Workers: workers, MaxQueued: len(execs) * perExec, Logger: quiet})
	var senders sync.WaitGroup
	for _, exec := range execs {
		senders.Go(func() {
			for i := range perExec {
				q.Handle(actors.RunAddr(exec), actors.Progress{Exec: exec, Attempt: i})
			}
		})
	}
	senders.Wait()
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, exec := range execs {
		seq := got[exec]
		if len(seq) != perExec {
			t.Fatalf("%s: %d effects performed, want %d", exec, len(seq), perExec)
		}
		for i, v := range seq {
			if v != i {
				t.Fatalf("%s: effect %d performed at position %d", exec, v, i)
			}
		}
	}
	if maxRunning > workers {
		t.Fatalf("%d effects performed at once, want at most %d", maxRunning, workers)
	}
	if q.Dropped() != 0 {
		t.Fatalf("%d effects dropped", q.Dropped())
	}
}

func TestQueueLimitsEachEffectAndSurvivesAPanic(t *testing.T) {
	done := make(chan string, 3)
	q := New(func(ctx context.Context, from actors.Addr, e actors.Effect) {
		switch e.(actors.Progress).Exec {
		case "hang":
			<-ctx.Done() // an await that never settles
			done <- fmt.Sprint("hang: ", ctx.Err())
		case "panic":
			done <- "panic"
			panic("boom")
		default:
			done <- "next"
		}
	}, Options{Workers: 1, Limit: 50 * time.Millisecond, Logger: quiet})
	defer q.Close(context.Background())
	for _, exec := range []string{"hang", "panic", "next"} {
		q.Handle(actors.RunAddr(exec), actors.Progress{Exec: exec})
	}
	for _, want := range []string{"hang: context deadline exceeded", "panic", "next"} {
		select {
		case got := <-done:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q: the queue is stuck", want)
		}
	}
}

// blockFirst is a perform whose first effect waits for release; started is closed
// once it runs.
func blockFirst(p *performed) (perform Perform, started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	return func(ctx context.Context, from actors.Addr, e actors.Effect) {
		first := false
		once.Do(func() { first = true })
		if first {
			close(started)
			<-release
		}
		p.add(describe(e))
	}, started, release
}

// TestQueueIsBoundedAndNeverBlocks fills a queue whose only worker is busy. Handle
// must return at once whatever the load (the native host calls it on its writer):
// an implementation that blocks when full hangs this test. When full, the newest
// projection of an execution replaces its queued one (without that rule the terminal
// "success" below is dropped and the test fails), and other effects are dropped.
func TestQueueIsBoundedAndNeverBlocks(t *testing.T) {
	p := &performed{}
	perform, started, release := blockFirst(p)
	q := New(perform, Options{Workers: 1, MaxQueued: 3, Logger: quiet})
	q.Handle(actors.RunAddr("a"), actors.StartAgent{Exec: "a"})
	<-started
	q.Handle(actors.RunAddr("a"), actors.Progress{Exec: "a", Status: actors.StatusRunning})
	q.Handle(actors.RunAddr("a"), actors.StepProgress{Exec: "a", Step: "s1", Status: actors.StepRunning})
	q.Handle(actors.RunAddr("b"), actors.Progress{Exec: "b", Status: actors.StatusQueued})
	q.Handle(actors.RunAddr("c"), actors.StartAgent{Exec: "c"}) // full: dropped
	q.Handle(actors.RunAddr("a"), actors.Progress{Exec: "a", Status: actors.StatusSuccess})
	q.Handle(actors.RunAddr("a"), actors.StepProgress{Exec: "a", Step: "s1", Status: actors.StepSuccess})
	q.mu.Lock()
	queued, lanes := q.queued, len(q.lanes)
	q.mu.Unlock()
	if queued != 3 || lanes != 2 {
		t.Fatalf("%d effects queued in %d lanes, want 3 in 2", queued, lanes)
	}
	close(release)
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"start a", "progress b queued", "progress a success", "step a s1 success"}
	if got := p.get(); strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("performed %q, want %q", got, want)
	}
	if q.Dropped() != 1 {
		t.Fatalf("dropped %d, want 1 (start c)", q.Dropped())
	}
}

// TestQueueServesExecutionsInTurn: one worker, a busy execution queued ahead of
// another; the other's effect must not wait for all of the busy one's.
func TestQueueServesExecutionsInTurn(t *testing.T) {
	p := &performed{}
	perform, started, release := blockFirst(p)
	q := New(perform, Options{Workers: 1, Logger: quiet})
	q.Handle(actors.RunAddr("a"), actors.Progress{Exec: "a", Status: actors.StatusQueued})
	<-started
	q.Handle(actors.RunAddr("a"), actors.Progress{Exec: "a", Status: actors.StatusAdmitted})
	q.Handle(actors.RunAddr("a"), actors.Progress{Exec: "a", Status: actors.StatusRunning})
	q.Handle(actors.RunAddr("b"), actors.Progress{Exec: "b", Status: actors.StatusQueued})
	close(release)
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"progress a queued", "progress b queued", "progress a admitted", "progress a running"}
	if got := p.get(); strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("performed %q, want %q", got, want)
	}
}

func TestQueueStartsNothingUntilUsedAndCloseDrains(t *testing.T) {
	p := &performed{}
	q := New(func(ctx context.Context, from actors.Addr, e actors.Effect) {
		runtime.Gosched()
		p.add(describe(e))
	}, Options{Logger: quiet})
	if q.workers != 0 {
		t.Fatalf("New started %d workers", q.workers)
	}
	for i := range 20 {
		exec := fmt.Sprint("e", i%5)
		q.Handle(actors.RunAddr(exec), actors.StartAgent{Exec: exec})
	}
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(p.get()); n != 20 {
		t.Fatalf("Close returned with %d of 20 queued effects performed", n)
	}
	if q.workers != 0 || len(q.lanes) != 0 {
		t.Fatalf("after Close: %d workers, %d lanes", q.workers, len(q.lanes))
	}
	q.Handle(actors.RunAddr("late"), actors.StartAgent{Exec: "late"})
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(p.get()); n != 20 || q.Dropped() != 1 {
		t.Fatalf("an effect handed over after Close: %d performed, %d dropped", n, q.Dropped())
	}
}

func TestQueueCloseGivesUpWhenItsContextEnds(t *testing.T) {
	p := &performed{}
	started := make(chan struct{})
	q := New(func(ctx context.Context, from actors.Addr, e actors.Effect) {
		if e.(actors.Progress).Exec == "hang" {
			close(started)
			<-ctx.Done()
			p.add("hang: " + ctx.Err().Error())
			return
		}
		p.add(describe(e))
	}, Options{Workers: 1, Logger: quiet})
	q.Handle(actors.RunAddr("hang"), actors.Progress{Exec: "hang"})
	<-started
	for _, exec := range []string{"hang", "b", "c"} {
		q.Handle(actors.RunAddr(exec), actors.Progress{Exec: exec, Status: actors.StatusRunning})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := q.Close(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "3 effects not performed") {
		t.Fatalf("Close = %v", err)
	}
	if got := p.get(); len(got) != 1 || got[0] != "hang: context canceled" {
		t.Fatalf("performed %q, want only the cancelled hang", got)
	}
	if q.Dropped() != 3 || q.workers != 0 {
		t.Fatalf("dropped %d, %d workers left", q.Dropped(), q.workers)
	}
}

// TestQueueCoalescesPositionReports: a queued run's position reports replace the one
// still waiting in its lane even when the queue is far from full (one projection, not
// one per report), while other statuses keep every projection. Without the coalescing
// in Handle, "progress a queued" is performed three times.
func TestQueueCoalescesPositionReports(t *testing.T) {
	p := &performed{}
	perform, started, release := blockFirst(p)
	q := New(perform, Options{Workers: 1, Logger: quiet})
	q.Handle(actors.RunAddr("b"), actors.StartAgent{Exec: "b"})
	<-started
	for pos := range 3 {
		q.Handle(actors.RunAddr("a"), actors.Progress{Exec: "a", Status: actors.StatusQueued, Queue: &actors.QueueInfo{Position: 10 - pos}})
	}
	q.Handle(actors.RunAddr("b"), actors.Progress{Exec: "b", Status: actors.StatusLeased})
	q.Handle(actors.RunAddr("b"), actors.Progress{Exec: "b", Status: actors.StatusRunning})
	q.Handle(actors.RunAddr("b"), actors.Progress{Exec: "b", Status: actors.StatusQueued})
	close(release)
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"start b", "progress a queued at 8", "progress b leased", "progress b running", "progress b queued"}
	if got := p.get(); strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("performed %q, want %q", got, want)
	}
	if q.Dropped() != 0 {
		t.Fatalf("dropped %d: coalescing is not dropping", q.Dropped())
	}
}
