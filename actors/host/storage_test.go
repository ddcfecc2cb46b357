package host

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// limitPages sets SQLite's max_page_count on the writer's connection: n = 0 pins the
// database at its current size, so the next commit that must grow it fails with
// SQLITE_FULL ("database or disk is full"), exactly as a full disk would.
func limitPages(t *testing.T, h *Host, n int64) {
	t.Helper()
	ctx := context.Background()
	if n == 0 {
		if err := h.store.conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	var got int64
	if err := h.store.conn.QueryRowContext(ctx, "PRAGMA max_page_count = "+strconv.FormatInt(n, 10)).Scan(&got); err != nil {
		t.Fatal(err)
	}
}

// TestFullDatabaseFailsCallersInsteadOfHanging: with the database full, a Call returns
// an error wrapping ErrStorage after the retry bound, Health reports it, the lost
// message leaves no trace in the actor's state, and once space returns the actor
// works from its last durable state. Before, the writer retried forever and every
// Call (a cancel among them) hung.
func TestFullDatabaseFailsCallersInsteadOfHanging(t *testing.T) {
	h := open(t, t.TempDir()+"/actors.db", &effects{}, Options{CommitRetry: 100 * time.Millisecond})
	x := toyAddr("x")
	call(t, h, x, tPush{"a"})
	limitPages(t, h, 0)
	big := strings.Repeat("x", 256<<10)
	for i := 0; i < 2; i++ { // the second one fails without the retry wait
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := h.Call(ctx, x, tPush{big})
		cancel()
		if !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "full") {
			t.Fatalf("call %d on a full database: %v, want ErrStorage", i, err)
		}
	}
	if err := h.Health(); !errors.Is(err, ErrStorage) {
		t.Fatalf("Health = %v while commits fail", err)
	}
	limitPages(t, h, 1<<30)
	snap := call(t, h, x, tGet{}).(tSnap)
	if snap.H.N != 1 || len(snap.Items) != 1 || snap.Items[0] != "a" {
		t.Fatalf("after the failures the actor holds %+v, want only the stored push", snap)
	}
	if got := call(t, h, x, tPush{"b"}).(tCount); got.N != 2 {
		t.Fatalf("push after recovery: %d", got.N)
	}
	if err := h.Health(); err != nil {
		t.Fatalf("Health = %v after a successful commit", err)
	}
}

// TestFreedSpaceRetriesTheCommitAtOnce: OnCommitError frees space (as the stack's
// emergency reserve does) and the same commit then succeeds: the caller never sees
// the failure.
func TestFreedSpaceRetriesTheCommitAtOnce(t *testing.T) {
	var h *Host
	var told atomic.Int32
	h = open(t, t.TempDir()+"/actors.db", &effects{}, Options{CommitRetry: time.Hour, OnCommitError: func(err error) bool {
		told.Add(1)
		limitPages(t, h, 1<<30)
		return true
	}})
	x := toyAddr("x")
	call(t, h, x, tPush{"a"})
	limitPages(t, h, 0)
	if got := call(t, h, x, tPush{strings.Repeat("y", 256<<10)}).(tCount); got.N != 2 || told.Load() != 1 {
		t.Fatalf("push with space freed on error: %d, hook told %d times", got.N, told.Load())
	}
}

// TestLostAlarmFiresAgain: the commit of an alarm's transition fails; the actor's
// durable wake is still due, so the host fires the alarm again once storage works.
// Without the re-arm the fired timer was gone and the alarm never came back.
func TestLostAlarmFiresAgain(t *testing.T) {
	fx := &effects{}
	h := open(t, t.TempDir()+"/actors.db", fx, Options{CommitRetry: 10 * time.Millisecond})
	x := toyAddr("x")
	var failing atomic.Bool
	var failed atomic.Int32
	h.store.failWrite = func() error {
		if failing.Load() {
			failed.Add(1)
			return errors.New("disk I/O error: no space left on device")
		}
		return nil
	}
	call(t, h, x, tWake{After: 50 * time.Millisecond})
	failing.Store(true) // after the wake is stored, before the alarm's transition is
	eventually(t, "the alarm's transition to be lost", func() bool { return failed.Load() > 0 && errors.Is(h.Health(), ErrStorage) })
	failing.Store(false)
	eventually(t, "the alarm to fire again", func() bool { return len(fx.progress("x", "alarm")) == 1 })
	if snap := call(t, h, x, tGet{}).(tSnap); snap.H.Alarms != 1 || !snap.H.Wake.IsZero() {
		t.Fatalf("after the retried alarm: %+v", snap.H)
	}
}
