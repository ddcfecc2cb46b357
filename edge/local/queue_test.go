package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// TestViewerStateCarriesTheQueuePosition: an execution waiting for the only slot has
// the check-run's queue line in its events' state (what `flare run` prints while
// queued), and loses it once admitted.
func TestViewerStateCarriesTheQueuePosition(t *testing.T) {
	st := startStack(t, env{"ADMISSION_CAP": "1"})
	repo, shas := gittest.Repo(t, 1)
	marker := filepath.Join(t.TempDir(), "release")
	hold := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], fmt.Sprintf("while [ ! -f %s ]; do sleep 0.1; done", marker), nil), "hold-slot").body["executionId"].(string)
	waitRunning(t, st, hold)
	id := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "echo queued-one", nil), "wait-slot").body["executionId"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sawQueue := false
	for ev := range openEvents(t, ctx, viewerURL(st, id, token(st, id))) {
		if ev.name == "end" {
			break
		}
		if ev.name != "state" {
			continue
		}
		var s struct{ Status, Queue string }
		json.Unmarshal([]byte(ev.data), &s)
		switch {
		case s.Status == "queued" && strings.HasPrefix(s.Queue, "Queued — waiting for a sandbox slot behind 0 runs (1/1 in use)"):
			sawQueue = true
			os.WriteFile(marker, nil, 0o644)
		case s.Status != "queued" && s.Queue != "":
			t.Fatalf("status %s with a queue line %q", s.Status, s.Queue)
		}
	}
	if !sawQueue {
		t.Fatal("no state with the queue line")
	}
	os.WriteFile(marker, nil, 0o644)
}
