package groupcommit

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "modernc.org/sqlite"
)

// open is a WAL database with one connection, as the local stack's meta.db.
func open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "m.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	return db
}

func present(t *testing.T, db *sql.DB, k string) bool {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t WHERE k = ?`, k).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func req(ctx context.Context, query string, args ...any) *request {
	return &request{ctx: ctx, query: query, args: args, done: make(chan struct{})}
}

func TestConcurrentWritesAllLand(t *testing.T) {
	db := open(t)
	w := New(db, 16)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			res, err := w.ExecContext(context.Background(), `INSERT OR IGNORE INTO t VALUES (?, 'x')`, fmt.Sprint(i%32))
			if err != nil {
				t.Error(err)
				return
			}
			if n, _ := res.RowsAffected(); n != 0 && n != 1 {
				t.Errorf("rows affected %d", n)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM t`).Scan(&n); err != nil || n != 32 {
		t.Fatalf("%d rows, %v; want 32", n, err)
	}
	if writes, txs := w.Stats(); writes != 64 || txs < 1 || txs > 64 {
		t.Fatalf("stats: %d writes in %d transactions", writes, txs)
	}
	if _, err := w.ExecContext(context.Background(), `INSERT INTO t VALUES ('late', 'x')`); err != ErrClosed {
		t.Fatalf("a write after Close: %v, want ErrClosed", err)
	}
}

// TestAFailedWriteIsUndoneAlone: in one batch, a write that breaks a constraint gets
// its error and the others commit, each with its own result.
func TestAFailedWriteIsUndoneAlone(t *testing.T) {
	db := open(t)
	if _, err := db.Exec(`INSERT INTO t VALUES ('dup', 'x')`); err != nil {
		t.Fatal(err)
	}
	w := &Writer{db: db}
	ctx := context.Background()
	a, b, c, d := req(ctx, `INSERT INTO t VALUES ('a', 'x')`), req(ctx, `INSERT INTO t VALUES ('dup', 'y')`),
		req(ctx, `INSERT OR IGNORE INTO t VALUES ('dup', 'z')`), req(ctx, `INSERT INTO t VALUES ('d', 'x')`)
	w.commit([]*request{a, b, c, d})
	if a.err != nil || d.err != nil || !present(t, db, "a") || !present(t, db, "d") {
		t.Fatalf("the good writes: %v, %v; a present %v, d present %v", a.err, d.err, present(t, db, "a"), present(t, db, "d"))
	}
	if b.err == nil || !strings.Contains(b.err.Error(), "UNIQUE") {
		t.Fatalf("the duplicate: %v, want its UNIQUE error", b.err)
	}
	if n, _ := c.res.RowsAffected(); c.err != nil || n != 0 {
		t.Fatalf("insert-or-ignore of a duplicate: %d rows, %v; want 0, nil", n, c.err)
	}
	if _, txs := w.Stats(); txs != 1 {
		t.Fatalf("%d transactions for one batch", txs)
	}
}

// TestAnErrorThatEndsTheTransactionFailsTheBatch: some errors make SQLite roll back
// the whole transaction (here a conflict with OR ROLLBACK; a full disk or an I/O error
// in production). Every caller must then hear an error, and nothing after it may run
// on its own. Without the savepoint around each write, 'c' below would run in
// autocommit after the rollback, be stored, and still be reported failed.
func TestAnErrorThatEndsTheTransactionFailsTheBatch(t *testing.T) {
	db := open(t)
	if _, err := db.Exec(`INSERT INTO t VALUES ('dup', 'x')`); err != nil {
		t.Fatal(err)
	}
	w := &Writer{db: db}
	ctx := context.Background()
	a, b, c := req(ctx, `INSERT INTO t VALUES ('a', 'x')`), req(ctx, `INSERT OR ROLLBACK INTO t VALUES ('dup', 'y')`), req(ctx, `INSERT INTO t VALUES ('c', 'x')`)
	w.commit([]*request{a, b, c})
	for _, r := range []struct {
		k   string
		req *request
	}{{"a", a}, {"c", c}} {
		if (r.req.err == nil) != present(t, db, r.k) {
			t.Fatalf("%s: error %v but stored %v: a caller must hear what happened", r.k, r.req.err, present(t, db, r.k))
		}
	}
	if b.err == nil {
		t.Fatal("the rolled-back write reported no error")
	}
	if _, err := db.Exec(`INSERT INTO t VALUES ('after', 'x')`); err != nil {
		t.Fatalf("the connection is left in a transaction: %v", err)
	}
}

// TestAWriteWhoseCallerGaveUpIsNotPerformed: a context that ended before the batch
// took the write up leaves nothing behind.
func TestAWriteWhoseCallerGaveUpIsNotPerformed(t *testing.T) {
	db := open(t)
	w := &Writer{db: db}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	a, b := req(context.Background(), `INSERT INTO t VALUES ('a', 'x')`), req(gone, `INSERT INTO t VALUES ('b', 'x')`)
	w.commit([]*request{a, b})
	if a.err != nil || !present(t, db, "a") || b.err == nil || present(t, db, "b") {
		t.Fatalf("a: %v (stored %v); b: %v (stored %v)", a.err, present(t, db, "a"), b.err, present(t, db, "b"))
	}
}
