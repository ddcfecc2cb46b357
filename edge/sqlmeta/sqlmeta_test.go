package sqlmeta_test

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
	"github.com/flare-dispatch/flare-dispatch/edge/sqlmeta"
	"github.com/flare-dispatch/flare-dispatch/migrations"
)

var ctx = context.Background()

// open is a migrated SQLite database with the local stack's pragmas that matter here
// (foreign keys on, as D1 has them).
func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "meta.db")+"?_pragma=foreign_keys(ON)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := migrations.Apply(ctx, db); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestMetadataContractOnSQLite(t *testing.T) {
	db := open(t) // one database for every case, as D1 is in the Worker
	porttest.Metadata(t, "sqlite-", func(t *testing.T) edge.Metadata { return &sqlmeta.Store{DB: db} })
}

func TestKVContractOnSQLite(t *testing.T) {
	db := open(t)
	porttest.KV(t, "sqlite-", func(t *testing.T) porttest.KVFixture {
		c := porttest.NewClock(time.Now())
		return porttest.KVFixture{KV: &sqlmeta.Store{DB: db, Now: c.Now}, Advance: c.Advance}
	})
}

// TestContractsWithAReadPool runs both contracts with reads on their own read-only
// connections, as the local stack opens them (a WAL database, one writer): every
// write must still go to DB (a write routed to Reads fails with "attempt to write a
// readonly database"), and every read must see the writes that returned before it.
func TestContractsWithAReadPool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=foreign_keys(ON)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if err := migrations.Apply(ctx, db); err != nil {
		t.Fatal(err)
	}
	reads, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	reads.SetMaxOpenConns(4)
	t.Cleanup(func() { reads.Close() })
	porttest.Metadata(t, "pool-", func(t *testing.T) edge.Metadata { return &sqlmeta.Store{DB: db, Reads: reads} })
	porttest.KV(t, "pool-", func(t *testing.T) porttest.KVFixture {
		c := porttest.NewClock(time.Now())
		return porttest.KVFixture{KV: &sqlmeta.Store{DB: db, Reads: reads, Now: c.Now}, Advance: c.Advance}
	})
}

// TestStoredForm pins the columns' form, which D1 and SQLite share and other readers
// (the dashboard's SQL, migrations) rely on: integer milliseconds, NULL for unset.
func TestStoredForm(t *testing.T) {
	db := open(t)
	s := &sqlmeta.Store{DB: db}
	start := time.Date(2026, 3, 1, 12, 0, 0, 123_456_789, time.UTC)
	if _, err := s.CreateExecution(ctx, edge.Execution{ID: "e", Run: "r", Repo: "o/r", Ref: "main", SHA: "s", Status: "queued", StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	var started int64
	var completed, parent, summary, check any
	var input string
	if err := db.QueryRow(`SELECT started_at, completed_at, parent_execution_id, summary_json, check_run_id, input_json FROM executions WHERE id = 'e'`).
		Scan(&started, &completed, &parent, &summary, &check, &input); err != nil {
		t.Fatal(err)
	}
	if started != start.UnixMilli() || completed != nil || parent != nil || summary != nil || check != nil || input != "" {
		t.Fatalf("stored %d %v %v %v %v %q", started, completed, parent, summary, check, input)
	}
	e, _ := s.Execution(ctx, "e")
	if !e.StartedAt.Equal(start.Truncate(time.Millisecond)) {
		t.Fatalf("read back %s: want millisecond precision", e.StartedAt)
	}
	if err := s.Put(ctx, "k", "v", 0); err != nil {
		t.Fatal(err)
	}
	var exp any
	if err := db.QueryRow(`SELECT expires_at FROM kv WHERE key = 'k'`).Scan(&exp); err != nil || exp != nil {
		t.Fatalf("no-TTL key expires_at %v, %v; want NULL", exp, err)
	}
}

// TestErrorsNameTheRow: a database failure is an error naming the row, never
// ErrNotFound (which the edge turns into a 404).
func TestErrorsNameTheRow(t *testing.T) {
	db := open(t)
	s := &sqlmeta.Store{DB: db}
	db.Close()
	for name, err := range map[string]error{
		"exec-7": func() error { _, err := s.Execution(ctx, "exec-7"); return err }(),
		"exec-8": func() error { _, err := s.CreateExecution(ctx, edge.Execution{ID: "exec-8"}); return err }(),
		"exec-9": s.UpdateExecution(ctx, edge.Execution{ID: "exec-9"}),
		"exec-a": s.PutStep(ctx, edge.StepRow{Exec: "exec-a", Name: "s"}),
		"exec-b": func() error { _, err := s.Steps(ctx, "exec-b"); return err }(),
		"key-c":  func() error { _, _, err := s.Get(ctx, "key-c"); return err }(),
		"key-d":  s.Put(ctx, "key-d", "v", 0),
		"fam-e":  func() error { _, _, err := s.PriorExecution(ctx, "fam-e", ""); return err }(),
		"exec-f": s.PutCost(ctx, "exec-f", edge.Cost{}),
	} {
		if err == nil || errors.Is(err, edge.ErrNotFound) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestStepNeedsItsExecution: the steps table references executions, locally as on D1.
func TestStepNeedsItsExecution(t *testing.T) {
	s := &sqlmeta.Store{DB: open(t)}
	if err := s.PutStep(ctx, edge.StepRow{Exec: "nobody", Name: "s", Status: "running", Attempt: 1}); err == nil {
		t.Fatal("a step of an absent execution was stored")
	}
}
