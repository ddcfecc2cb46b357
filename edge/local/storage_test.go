package local_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/disktest"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

func health(t *testing.T, st *local.Stack) response {
	return get(t, st.URL+"/health")
}

// TestFullDiskEndsTheRunWithStorageFull puts the data directory on a 24 MiB tmpfs,
// starts a run whose command waits, fills the disk to the last byte, then lets the
// command print 3 MB. The log cannot be stored, yet the run must end (failure,
// StorageFull in its summary), a cancel of a second run must answer and end it,
// /health must say degraded while the disk is full and ok once space is back.
// Before, the actor host retried its commit forever: the run stayed running, cancel
// hung, the shipper dropped segments silently and /health said ok.
func TestFullDiskEndsTheRunWithStorageFull(t *testing.T) {
	disk := disktest.Small(t, "24m")
	side := t.TempDir()
	st, err := local.Open(context.Background(), local.Options{
		DataDir: filepath.Join(disk, "data"), Addr: "127.0.0.1:0", Getenv: env{}.get,
		NoIsolation:  true, // the command waits for a file the test writes beside it
		AgentCommand: []string{flareBin, "agent", "--log-give-up", "1s"}, Runs: runs.Registry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	if r := health(t, st); r.status != http.StatusOK {
		t.Fatalf("health before: %d %s", r.status, r.raw)
	}
	repo, shas := gittest.Repo(t, 2)
	gate := filepath.Join(side, "go")
	cmd := `echo started; while [ ! -e ` + gate + ` ]; do sleep 0.05; done; head -c 3000000 /dev/zero | tr '\0' x | fold -w 1000; echo printed`
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], cmd, nil), "full-1")
	long := dispatch(t, st, "offload-test", offloadBody(repo, shas[1], "sleep 120", nil), "full-2")
	if r.status != 202 || long.status != 202 {
		t.Fatalf("dispatch: %d %s / %d %s", r.status, r.raw, long.status, long.raw)
	}
	id, longID := r.body["executionId"].(string), long.body["executionId"].(string)
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(logsText(t, st, id), "started") || executionView(t, st, longID).Execution.Status != "running" {
		if time.Now().After(deadline) {
			t.Fatal("the runs did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}

	disktest.Fill(t, filepath.Join(disk, "filler"))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v := waitDone(t, st, id, 90*time.Second)
	if v.Execution.Status != "failure" || !strings.Contains(v.Check.Summary, "Storage refused a write") {
		t.Fatalf("run on a full disk: %s\n%s", v.Execution.Status, v.Check.Summary)
	}
	if h := health(t, st); h.status != http.StatusServiceUnavailable || h.body["status"] != "degraded" || h.body["reason"] == "" {
		t.Fatalf("health on a full disk: %d %s", h.status, h.raw)
	}
	c := post(t, st.URL+"/v1/executions/"+longID+"/cancel", nil, map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken})
	if c.status != http.StatusAccepted {
		t.Fatalf("cancel on a full disk: %d %s", c.status, c.raw)
	}
	if lv := waitDone(t, st, longID, 60*time.Second); lv.Execution.Status == "running" || lv.Execution.Status == "success" {
		t.Fatalf("cancelled run: %s", lv.Execution.Status)
	}

	if err := os.Remove(filepath.Join(disk, "filler")); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for h := health(t, st); h.status != http.StatusOK; h = health(t, st) {
		if time.Now().After(deadline) {
			t.Fatalf("health after space came back: %d %s", h.status, h.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(disk, "data", "reserve")); err != nil {
		t.Fatalf("the reserve was not written back: %v", err)
	}
}
