package cloudflare

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

func TestEffectQueueKeepsEachExecutionsOrder(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]int{}
	var wg sync.WaitGroup
	q := NewEffectQueue(func(ctx context.Context, from actors.Addr, e actors.Effect) {
		defer wg.Done()
		p := e.(actors.Progress)
		if p.Attempt%7 == 0 {
			time.Sleep(time.Millisecond) // a slow projection must not be overtaken
		}
		mu.Lock()
		got[p.Exec] = append(got[p.Exec], p.Attempt)
		mu.Unlock()
	}, 3, time.Second, nil)
	for i := range 200 {
		for _, exec := range []string{"a", "b", "c", "d", "e"} {
			wg.Add(1)
			q.Handle(context.Background(), actors.RunAddr(exec), actors.Progress{Exec: exec, Attempt: i})
		}
	}
	wg.Wait()
	for exec, seq := range got {
		for i, v := range seq {
			if v != i {
				t.Fatalf("%s: effect %d performed at position %d", exec, v, i)
			}
		}
	}
}

func TestEffectQueueBoundsAnEffectAndSurvivesAPanic(t *testing.T) {
	done := make(chan string, 3)
	q := NewEffectQueue(func(ctx context.Context, from actors.Addr, e actors.Effect) {
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
	}, 1, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, exec := range []string{"hang", "panic", "next"} {
		q.Handle(context.Background(), actors.RunAddr(exec), actors.Progress{Exec: exec})
	}
	for _, want := range []string{"hang: context deadline exceeded", "panic", "next"} {
		select {
		case got := <-done:
			if got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %q: the queue is stuck", want)
		}
	}
}
