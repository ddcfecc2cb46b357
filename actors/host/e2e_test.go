package host

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
)

// TestRunsFinishUnderCapWithoutSandboxOverlap drives hundreds of runs of the real
// reducers through their whole lifecycle: RunStart as the edge sends it, agents that
// heartbeat, run steps and exit, two pools with a small cap and sandboxes shared by
// several runs each.
func TestRunsFinishUnderCapWithoutSandboxOverlap(t *testing.T) {
	const runs, sandboxes = 400, 25 // 8 runs per sandbox
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 3
	f := newFleet(t, cfg, 2)
	h, err := Open(context.Background(), filepath.Join(t.TempDir(), "actors.db"), kinds.Factory(cfg), f, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.host.Store(h)
	for i := range runs {
		if err := h.Send(actors.RunAddr(runStart(i, sandboxes).Exec), runStart(i, sandboxes)); err != nil {
			t.Fatal(err)
		}
	}
	f.wait(runs, time.Minute, func(i int) string { return runStart(i, sandboxes).Exec })
	for i := range runs {
		st := call(t, h, actors.RunAddr(runStart(i, sandboxes).Exec), actors.RunQuery{}).(actors.RunStatus)
		if st.Status != actors.StatusSuccess || st.Attempt != 1 {
			t.Fatalf("run %d: %+v", i, st)
		}
	}
	if err := h.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.agents.Wait()
	f.check()
	if f.restarts > 0 {
		t.Errorf("%d agents restarted: heartbeats were missed", f.restarts)
	}
}
