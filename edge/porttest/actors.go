package porttest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// The Actors contract: the native host (actors/host) and the Durable Object host (the
// Worker's EdgeActors), both running the real reducers (actors/kinds). The cases talk
// to run actors of fresh execution ids and cancel what they start, so a shared host
// can run them; pool and sandbox are fixed by the case, so admission and lease are
// exercised too.

// Actors runs the contract; newActors is called once per subtest.
func Actors[R Runner[R]](t R, prefix string, newActors func(t R) edge.Actors) {
	run(t, withPrefix(actorsTests, prefix), newActors)
}

var actorsTests = []test[edge.Actors]{
	{"CallIsAnsweredByTheActor", actorsCall},
	{"StartIsIdempotent", actorsStart},
	{"CallWithoutAReplyIsAnError", actorsNoReply},
	{"SendIsAppliedInOrder", actorsSend},
	{"CallsToOneActorAreSerialized", actorsSerialized},
	{"CallHonoursACancelledContext", actorsContext},
}

func runStart(id string) actors.RunStart {
	return actors.RunStart{Exec: id, Run: "contract", Pool: "contract-" + id, Sandbox: "sb-" + id, MaxDuration: time.Hour}
}

func mustCall(t T, a edge.Actors, to actors.Addr, m actors.Message) actors.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := a.Call(ctx, to, m)
	if err != nil {
		t.Fatalf("call %s on %s: %v", m.Type(), to, err)
	}
	return r
}

func runStatus(t T, a edge.Actors, id string) actors.RunStatus {
	t.Helper()
	r, ok := mustCall(t, a, actors.RunAddr(id), actors.RunQuery{Exec: id}).(actors.RunStatus)
	if !ok {
		t.Fatalf("RunQuery answered %T", r)
	}
	return r
}

// cancelRun ends a started run so it releases what it holds.
func cancelRun(t T, a edge.Actors, id string) {
	t.Helper()
	mustCall(t, a, actors.RunAddr(id), actors.RunCancel{Exec: id, Reason: "contract test done"})
}

func actorsCall(t T, a edge.Actors) {
	id := idOf(t)
	if got := runStatus(t, a, id); got != (actors.RunStatus{Exec: id}) {
		t.Fatalf("query of an unstarted execution: %+v", got)
	}
}

func actorsStart(t T, a edge.Actors) {
	id := idOf(t)
	first, ok := mustCall(t, a, actors.RunAddr(id), runStart(id)).(actors.RunStatus)
	if !ok || !first.Created || first.Status != actors.StatusQueued || first.Exec != id {
		t.Fatalf("first start: %+v", first)
	}
	defer cancelRun(t, a, id)
	again := mustCall(t, a, actors.RunAddr(id), runStart(id)).(actors.RunStatus)
	if again.Created || again.Status == "" {
		t.Fatalf("second start: %+v, want the existing execution", again)
	}
}

func actorsNoReply(t T, a edge.Actors) {
	id := idOf(t)
	// A ChildDone to an unstarted execution changes nothing and answers nothing.
	r, err := a.Call(ctx, actors.RunAddr(id), actors.ChildDone{Exec: id, Child: id + "-c", Status: actors.StatusSuccess})
	if err == nil {
		t.Fatalf("call without a reply: %v, nil; want an error", r)
	}
}

func actorsSend(t T, a edge.Actors) {
	id := idOf(t)
	mustCall(t, a, actors.RunAddr(id), runStart(id))
	// Send cancels, then a call queries: the cancel is applied before the query (one
	// sender's messages to one actor arrive in order).
	if err := a.Send(actors.RunAddr(id), actors.RunCancel{Exec: id, Reason: "sent"}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if got := runStatus(t, a, id); got.Status != actors.StatusCancelled || got.Failure == nil || got.Failure.Message != "sent" {
		t.Fatalf("after a sent cancel: %+v", got)
	}
}

func actorsSerialized(t T, a edge.Actors) {
	id := idOf(t)
	mustCall(t, a, actors.RunAddr(id), runStart(id))
	defer cancelRun(t, a, id)
	// Concurrent deliveries of the same event: the actor applies them one at a time,
	// so exactly one records it and the others see a duplicate.
	const n = 8
	acks := make([]actors.RunEventAck, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := a.Call(ctx, actors.RunAddr(id), actors.RunEvent{Exec: id, Kind: "approve", Payload: []byte(fmt.Sprint(i))})
			errs[i] = err
			acks[i], _ = r.(actors.RunEventAck)
		})
	}
	wg.Wait()
	delivered := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		switch {
		case acks[i].Delivered && !acks[i].Duplicate:
			delivered++
		case !acks[i].Duplicate:
			t.Errorf("ack %d neither delivered nor duplicate: %+v", i, acks[i])
		}
	}
	if delivered != 1 {
		t.Fatalf("%d of %d concurrent deliveries recorded the event, want exactly 1", delivered, n)
	}
}

func actorsContext(t T, a edge.Actors) {
	c, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.Call(c, actors.RunAddr(idOf(t)), actors.RunQuery{Exec: idOf(t)}); err == nil {
		t.Fatal("call with a cancelled context succeeded")
	}
}
