// Package groupcommit performs single-statement writes to a SQLite database many to a
// transaction: one fsync for every write that arrived while the previous transaction
// was committing, instead of one each.
//
// The local stack's metadata database has one writer connection (SQLite has one
// writer). Under a burst of dispatches, each dispatch's two writes and the effect
// queue's projections of the new runs took turns on it, one synchronous commit each,
// so a dispatch waited for every write queued ahead of it: about 50 ms at 8 clients on
// this project's machine. Batched, a write waits for at most one commit in progress
// and its own.
//
// Durability is unchanged: ExecContext returns only after the transaction holding the
// write has committed (the database's synchronous setting applies to that commit).
// Each write runs inside its own savepoint, so a write that fails (a constraint) is
// undone alone and reported to its caller, and the others commit; if the commit
// itself fails, every write of the batch reports that error.
package groupcommit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrClosed is returned by ExecContext after Close.
var ErrClosed = errors.New("groupcommit: writer closed")

// Writer batches writes onto one connection of db. It is safe for concurrent use.
type Writer struct {
	db       *sql.DB
	maxBatch int
	reqs     chan *request
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once

	writes, batches atomic.Int64
}

type request struct {
	ctx   context.Context
	query string
	args  []any
	res   result
	err   error
	done  chan struct{}
}

// result is a write's sql.Result, read while its statement was current.
type result struct{ id, rows int64 }

func (r result) LastInsertId() (int64, error) { return r.id, nil }
func (r result) RowsAffected() (int64, error) { return r.rows, nil }

// New starts a writer that commits up to maxBatch writes per transaction (at least 1);
// Close stops it.
func New(db *sql.DB, maxBatch int) *Writer {
	w := &Writer{db: db, maxBatch: max(maxBatch, 1), reqs: make(chan *request), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop()
	return w
}

// ExecContext performs one statement that writes, and returns once it is committed.
// A ctx that ends before the write is taken up returns its error and writes nothing;
// once taken up, the write's outcome is the commit's.
func (w *Writer) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	r := &request{ctx: ctx, query: query, args: args, done: make(chan struct{})}
	select {
	case w.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-w.stop:
		return nil, ErrClosed
	}
	<-r.done
	if r.err != nil {
		return nil, r.err
	}
	return r.res, nil
}

// Stats reports the writes performed and the transactions they took.
func (w *Writer) Stats() (writes, transactions int64) { return w.writes.Load(), w.batches.Load() }

// Close stops taking writes, lets the batch in progress commit, and returns.
func (w *Writer) Close() error {
	w.once.Do(func() { close(w.stop) })
	<-w.done
	return nil
}

func (w *Writer) loop() {
	defer close(w.done)
	for {
		var first *request
		select {
		case first = <-w.reqs:
		case <-w.stop:
			return
		}
		batch := []*request{first}
	fill: // everything that arrived meanwhile, up to maxBatch
		for len(batch) < w.maxBatch {
			select {
			case r := <-w.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		w.commit(batch)
		for _, r := range batch {
			close(r.done)
		}
	}
}

// commit performs a batch: a lone write as it is (autocommit), several in one
// transaction with a savepoint each.
func (w *Writer) commit(batch []*request) {
	w.writes.Add(int64(len(batch)))
	w.batches.Add(1)
	ctx := context.Background() // a caller's deadline must not cut a batch shared with others
	if len(batch) == 1 {
		r := batch[0]
		if r.err = r.ctx.Err(); r.err == nil {
			r.res, r.err = exec(ctx, w.db, r.query, r.args)
		}
		return
	}
	fail := func(err error) {
		for _, r := range batch {
			if r.err == nil {
				r.err = err
			}
		}
	}
	conn, err := w.db.Conn(ctx)
	if err != nil {
		fail(err)
		return
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	for _, r := range batch {
		if r.err = r.ctx.Err(); r.err != nil {
			continue // its caller gave up before the write was taken up
		}
		if _, err := conn.ExecContext(ctx, "SAVEPOINT w"); err != nil {
			fail(fmt.Errorf("savepoint: %w", err))
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			return
		}
		r.res, r.err = exec(ctx, conn, r.query, r.args)
		var err error
		if r.err != nil {
			_, err = conn.ExecContext(ctx, "ROLLBACK TO w")
		}
		if err == nil {
			_, err = conn.ExecContext(ctx, "RELEASE w")
		}
		if err != nil {
			// SQLite ends the whole transaction on some errors (I/O, full disk).
			fail(fmt.Errorf("after %v: %w", r.err, err))
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
			return
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		fail(fmt.Errorf("commit: %w", err))
		_, _ = conn.ExecContext(ctx, "ROLLBACK")
		for _, r := range batch {
			r.res = result{}
		}
	}
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func exec(ctx context.Context, e execer, query string, args []any) (result, error) {
	res, err := e.ExecContext(ctx, query, args...)
	if err != nil {
		return result{}, err
	}
	var r result
	r.id, _ = res.LastInsertId()
	r.rows, _ = res.RowsAffected()
	return r, nil
}
