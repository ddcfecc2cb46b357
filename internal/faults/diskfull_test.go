package faults

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/flare-dispatch/flare-dispatch/actors/host"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/disktest"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// healthOf is the stack's /health: its status code and body.
func healthOf(t *testing.T, st *local.Stack) (int, map[string]any) {
	t.Helper()
	resp, err := client.Get(st.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// truncateWAL checkpoints a database of the stack from a connection of the test's own
// and truncates its write-ahead log to nothing, as a checkpoint does in production:
// the next commit must then grow the file, so on a full disk it fails at once rather
// than reuse the log's slack.
func truncateWAL(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var busy, logged, done int
		if err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logged, &done); err != nil {
			t.Fatal(err)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the checkpoint stayed busy", path)
		}
	}
}

// TestSQLiteDiskFullWhileRunsAreInFlight puts the stack's data directory (meta.db,
// actors.db, the blob store) on a real 24 MiB tmpfs and fills it to the last byte
// while two runs are in flight, twice: the first time the stack's emergency reserve
// absorbs it, the second time SQLite itself has no room (its commits fail with
// SQLITE_FULL). What must hold:
//   - a dispatch while the databases are full is answered at once with a clear error
//     (500 start_failed naming the full database), never acknowledged then lost; the
//     same dispatch retried once space is back is accepted and runs green;
//   - the run whose command ends on the first fill ends failed with StorageFull (its
//     log could not be stored) thanks to the reserve: the actor host's first failing
//     commit releases it (edge/local/storage.go). Fails with OnCommitError removed
//     from local.Open: the run cannot end until space returns.
//   - with the reserve spent, the actor host's commits fail (ErrStorage after
//     CommitRetry) and /health answers 503 degraded saying so; the run whose command
//     ends then is not lost: once space is back it ends in a defined state with a
//     completed check and a summary. Fails with host.Health's report removed (/health
//     says ok while commits fail).
//   - /health is 503 degraded throughout and 200 again, with the reserve written
//     back, once space returns; every run acknowledged with a 202 reaches a terminal
//     state with a completed check within a deadline (nothing hangs).
func TestSQLiteDiskFullWhileRunsAreInFlight(t *testing.T) {
	disk := disktest.Small(t, "24m")
	data := filepath.Join(disk, "data")
	st := stack(t, nil, local.Options{DataDir: data, NoIsolation: true, // the commands wait on files beside the test
		AgentCommand: []string{flareBin, "agent", "--log-give-up", "1s"}})
	if code, body := healthOf(t, st); code != http.StatusOK {
		t.Fatalf("health before: %d %v", code, body)
	}
	repo, shas := gittest.Repo(t, 4)
	side := t.TempDir()
	wait := func(gate string) string {
		return "echo started; while [ ! -e " + filepath.Join(side, gate) + " ]; do sleep 0.05; done; echo finished"
	}
	release := func(gate string) {
		if err := os.WriteFile(filepath.Join(side, gate), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := dispatch(t, st, offload(repo, shas[0], wait("a")))
	b := dispatch(t, st, offload(repo, shas[1], wait("b")))
	acked := []string{a, b}
	eventually(t, time.Minute, "both runs started", func() bool {
		return strings.Contains(logsText(t, st, a), "started") && strings.Contains(logsText(t, st, b), "started")
	})

	// The first fill: the databases' logs have no slack and the disk no byte.
	filler := filepath.Join(disk, "filler")
	truncateWAL(t, filepath.Join(data, "meta.db"))
	truncateWAL(t, filepath.Join(data, "actors.db"))
	disktest.Fill(t, filler)
	if code, body := healthOf(t, st); code != http.StatusServiceUnavailable || body["status"] != "degraded" {
		t.Fatalf("health on a full disk: %d %v", code, body)
	}
	// A dispatch now: either a clear refusal or an acknowledgement that must hold.
	refused := map[string]map[string]any{} // idempotency key → body, for the retry
	dispatchWhileFull := func(key, sha string) {
		t.Helper()
		body := offload(repo, sha, "echo ok")
		code, out, raw := post(t, st, body, key)
		t.Logf("dispatch %s on a full disk: %d %s", key, code, strings.TrimSpace(raw))
		switch {
		case code == http.StatusAccepted:
			acked = append(acked, out["executionId"].(string))
		case code == http.StatusInternalServerError && out["error"] == "start_failed" && strings.Contains(raw, "full"):
			refused[key] = body
		default:
			t.Fatalf("dispatch %s on a full disk: %d %s", key, code, raw)
		}
	}
	dispatchWhileFull("full-c", shas[2])
	release("a")
	va := waitDone(t, st, a, time.Minute)
	if va.Execution.Status != "failure" || !strings.Contains(va.Check.Summary, "Storage refused a write") {
		t.Fatalf("run a on a full disk: %s\n%s", va.Execution.Status, va.Check.Summary)
	}
	if code, body := healthOf(t, st); code != http.StatusServiceUnavailable || !strings.Contains(body["reason"].(string), "reserve was released") {
		t.Fatalf("health once the reserve was released: %d %v", code, body)
	}

	// The second fill: the reserve is spent; SQLite has no room at all.
	truncateWAL(t, filepath.Join(data, "meta.db"))
	truncateWAL(t, filepath.Join(data, "actors.db"))
	disktest.Fill(t, filler)
	dispatchWhileFull("full-d", shas[3])
	release("b")
	// Held full until a batch has failed for good (ErrStorage after the host's
	// CommitRetry of 10 s): its callers were answered with the error, its effects dropped.
	eventually(t, time.Minute, "/health to report commits failed for good", func() bool {
		code, body := healthOf(t, st)
		r, _ := body["reason"].(string)
		return code == http.StatusServiceUnavailable && body["status"] == "degraded" &&
			strings.Contains(r, "actor state commits are failing") && strings.Contains(r, host.ErrStorage.Error())
	})

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "/health ok once space is back", func() bool {
		code, _ := healthOf(t, st)
		return code == http.StatusOK
	})
	if _, err := os.Stat(filepath.Join(data, "reserve")); err != nil {
		t.Fatalf("the reserve was not written back: %v", err)
	}
	for key, body := range refused { // the client retries what was refused
		code, out, raw := post(t, st, body, key)
		if code != http.StatusAccepted {
			t.Fatalf("retried dispatch %s once space is back: %d %s", key, code, raw)
		}
		acked = append(acked, out["executionId"].(string))
	}
	ended := map[string]string{}
	for _, id := range acked {
		v := waitDone(t, st, id, 2*time.Minute)
		ended[id] = v.Execution.Status
		if v.Check.Summary == "" {
			t.Fatalf("%s ended %s without a summary", id, v.Execution.Status)
		}
		t.Logf("%s: %s — %s", id, v.Execution.Status, v.Check.Summary)
		switch {
		case id == b: // its log was refused for a while: it is whole (the give-up outlasted by space) or marked lost
			if v.Execution.Status != "success" && (v.Execution.Status != "failure" || !strings.Contains(v.Check.Summary, "Storage refused a write")) {
				t.Fatalf("run b, whose command ended while SQLite was full, ended %s:\n%s", v.Execution.Status, v.Check.Summary)
			}
		case id != a && v.Execution.Status != "success":
			t.Fatalf("%s, dispatched on a full disk, ended %s once space was back:\n%s", id, v.Execution.Status, v.Check.Summary)
		}
	}
	// What the stack said once space was back is what it stored: reopened on the same
	// data directory, every acknowledged execution is there, ended as it was.
	if err := st.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	again := stack(t, nil, local.Options{DataDir: data, NoIsolation: true})
	for id, status := range ended {
		if v := waitDone(t, again, id, 30*time.Second); v.Execution.Status != status {
			t.Fatalf("%s ended %s, reopened it is %s", id, status, v.Execution.Status)
		}
	}
}
