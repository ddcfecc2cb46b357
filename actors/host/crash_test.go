package host

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/internal/ci"
)

const (
	crashEnv  = "FLARE_HOST_CRASH_DB"
	crashRuns = 300
	crashSbox = 20
)

// crashConfig shortens the liveness timings so that runs whose agents died with the
// host are restarted within seconds.
func crashConfig() kinds.Config {
	cfg := kinds.DefaultConfig()
	cfg.Admission.Cap = 3
	cfg.Run.KeepAlive = time.Second
	cfg.Run.AgentDead = 2 * time.Second
	cfg.Run.AgentBoot = 3 * time.Second
	return cfg
}

// TestCrashChild is the process that gets killed: it drives crashRuns runs and
// prints each success and violation for its parent. It does nothing unless run by
// TestKillNineMidwayThenAllRunsFinish.
func TestCrashChild(t *testing.T) {
	db := os.Getenv(crashEnv)
	if db == "" {
		return // a helper process, not a test of its own: nothing was skipped
	}
	cfg := crashConfig()
	f := newFleet(t, cfg, 3)
	f.pause = 2 * time.Millisecond // slow enough to be killed midway
	f.report = func(kind, detail string) { fmt.Printf("%s %s\n", kind, detail) }
	h, err := Open(context.Background(), db, kinds.Factory(cfg), f, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	f.host.Store(h)
	for i := range crashRuns {
		if err := h.Send(actors.RunAddr(runStart(i, crashSbox).Exec), runStart(i, crashSbox)); err != nil {
			t.Fatal(err)
		}
	}
	select {} // until killed
}

func TestKillNineMidwayThenAllRunsFinish(t *testing.T) {
	ci.SkipShort(t, "spawns a child process")
	db := filepath.Join(t.TempDir(), "actors.db")
	child := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=2m")
	child.Env = append(os.Environ(), crashEnv+"="+db)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	done := 0
	for done < crashRuns/3 && lines.Scan() {
		kind, detail, _ := strings.Cut(lines.Text(), " ")
		switch kind {
		case "success":
			done++
		case "violation":
			t.Errorf("before the kill: %s", detail)
		}
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	if done < crashRuns/3 {
		t.Fatalf("child ended after %d successes", done)
	}
	killedAt := time.Now()

	// A new host on the same database; the edge re-sends every RunStart (idempotent),
	// as a retrying trigger would.
	cfg := crashConfig()
	f := newFleet(t, cfg, 3)
	opened := time.Now()
	h, err := Open(context.Background(), db, kinds.Factory(cfg), f, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	openTook := time.Since(opened)
	f.host.Store(h)
	var recovering int
	if err := h.store.rdb.QueryRow(`SELECT count(*) FROM actors WHERE wake_at > 0 OR idle = 0`).Scan(&recovering); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(context.Background())
	pending := map[string]bool{}
	for i := range crashRuns {
		st := call(t, h, actors.RunAddr(runStart(i, crashSbox).Exec), runStart(i, crashSbox)).(actors.RunStatus)
		if st.Status != actors.StatusSuccess {
			pending[st.Exec] = true
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d runs unfinished a minute after the restart", len(pending))
		}
		time.Sleep(20 * time.Millisecond)
		for exec := range pending {
			st := call(t, h, actors.RunAddr(exec), actors.RunQuery{}).(actors.RunStatus)
			if st.Status.Terminal() {
				if st.Status != actors.StatusSuccess {
					t.Fatalf("%s ended %s after the restart: %v", exec, st.Status, st.Failure)
				}
				delete(pending, exec)
			}
		}
	}
	t.Logf("killed after %d of %d runs; Open took %v recovering %d actors; all finished %v after the kill; %d agents restarted (after AgentDead %v)",
		done, crashRuns, openTook.Round(time.Millisecond), recovering, time.Since(killedAt).Round(time.Millisecond), f.restarts, cfg.Run.AgentDead)
	if err := h.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.agents.Wait()
	f.mu.Lock()
	for _, v := range f.violations {
		t.Errorf("after the restart: %s", v)
	}
	f.mu.Unlock()
}
