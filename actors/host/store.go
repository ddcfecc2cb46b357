package host

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"ergo.services/ergo/gen"
	_ "modernc.org/sqlite" // the driver "sqlite"

	"github.com/flare-dispatch/flare-dispatch/actors"
)

// schema is the host's own storage. An actor is one actors row (its header, its wake
// time in Unix ms with 0 for none, and whether it was idle) plus its rows in
// actor_rows: queues and journals are rows, never one growing blob.
const schema = `
CREATE TABLE IF NOT EXISTS actors (
	kind    TEXT    NOT NULL,
	key     TEXT    NOT NULL,
	header  BLOB,
	wake_at INTEGER NOT NULL DEFAULT 0,
	idle    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS actors_recover ON actors (kind, key) WHERE wake_at > 0 OR idle = 0;
CREATE TABLE IF NOT EXISTS actor_rows (
	kind    TEXT NOT NULL,
	key     TEXT NOT NULL,
	row_key TEXT NOT NULL,
	value   BLOB,
	PRIMARY KEY (kind, key, row_key)
) WITHOUT ROWID;
`

// record is one applied message: what to write, then what to do once it is durable.
type record struct {
	addr actors.Addr
	pid  gen.PID
	seq  uint64 // the process's delivery count after this message

	meta   bool   // write the actors row: header (when not nil), wake and idle
	header []byte // nil: unchanged
	rows   []actors.RowChange
	wake   time.Time
	idle   bool

	wakeChanged bool // the router must re-arm the alarm
	effects     []actors.Effect
	reply       chan<- result

	err    error // the message failed: answer the caller with it
	broken bool  // the process must be dropped
	lost   bool  // its commit failed: the router re-arms the actor's alarm
}

// Save implements actors.Saver: the writer persists the change with the record.
func (r *record) Save(c actors.Change) error {
	r.header, r.rows = c.Header, c.Rows
	return nil
}

// store is the database plus the single writer that group-commits records.
type store struct {
	log      *slog.Logger
	maxBatch int
	maxDelay time.Duration
	retry    time.Duration    // Options.CommitRetry
	onError  func(error) bool // Options.OnCommitError

	failing atomic.Pointer[error] // the last commit failed (Host.Health)
	// lostPIDs are processes whose record failed to commit: their later records were
	// applied on state that never became durable, so they fail too. Only the writer
	// touches it; a few entries per failure, kept for the host's life.
	lostPIDs map[gen.PID]bool
	// failWrite, when set (tests only), fails every write that has something to store.
	failWrite func() error

	wdb, rdb *sql.DB
	conn     *sql.Conn // the writer's one connection
	upsert, setMeta, putRow, delRow,
	loadActor, loadRows *sql.Stmt

	// Counters for benchmarks: transactions committed, records in them.
	commits, committed atomic.Int64

	in      chan *record
	quit    chan struct{} // Stop began: commit what is queued, then exit
	abandon chan struct{} // Stop's context ended: commit nothing more
	dead    chan struct{} // the writer exited
}

func openStore(ctx context.Context, path string, opt Options) (_ *store, err error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("database path %q: must not contain ? or #", path)
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	s := &store{
		log: opt.Logger, maxBatch: opt.MaxBatch, maxDelay: opt.MaxDelay, retry: opt.CommitRetry, onError: opt.OnCommitError,
		lostPIDs: map[gen.PID]bool{},
		in:       make(chan *record, 4*opt.MaxBatch),
		quit:     make(chan struct{}), abandon: make(chan struct{}), dead: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.wdb, err = sql.Open("sqlite", dsn); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.wdb.SetMaxOpenConns(1)
	if s.conn, err = s.wdb.Conn(ctx); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if _, err = s.conn.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("create actor tables in %s: %w", path, err)
	}
	if s.rdb, err = sql.Open("sqlite", dsn); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.rdb.SetMaxOpenConns(4)
	s.rdb.SetMaxIdleConns(4)
	for _, p := range []struct {
		stmt **sql.Stmt
		conn interface {
			PrepareContext(context.Context, string) (*sql.Stmt, error)
		}
		sql string
	}{
		{&s.upsert, s.conn, `INSERT INTO actors (kind, key, header, wake_at, idle) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (kind, key) DO UPDATE SET header = excluded.header, wake_at = excluded.wake_at, idle = excluded.idle`},
		{&s.setMeta, s.conn, `UPDATE actors SET wake_at = ?, idle = ? WHERE kind = ? AND key = ?`},
		{&s.putRow, s.conn, `INSERT INTO actor_rows (kind, key, row_key, value) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, key, row_key) DO UPDATE SET value = excluded.value`},
		{&s.delRow, s.conn, `DELETE FROM actor_rows WHERE kind = ? AND key = ? AND row_key = ?`},
		{&s.loadActor, s.rdb, `SELECT header, wake_at, idle FROM actors WHERE kind = ? AND key = ?`},
		{&s.loadRows, s.rdb, `SELECT row_key, value FROM actor_rows WHERE kind = ? AND key = ?`},
	} {
		if *p.stmt, err = p.conn.PrepareContext(ctx, p.sql); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", p.sql, err)
		}
	}
	return s, nil
}

// recoverable lists the actors that must be loaded on start: those with a wake time
// or not idle. The result is the router's first message.
func (s *store) recoverable(ctx context.Context) (recoverAll, error) {
	rows, err := s.conn.QueryContext(ctx, `SELECT kind, key FROM actors WHERE wake_at > 0 OR idle = 0`)
	if err != nil {
		return nil, fmt.Errorf("list actors to recover: %w", err)
	}
	defer rows.Close()
	var out recoverAll
	for rows.Next() {
		var a actors.Addr
		if err := rows.Scan(&a.Kind, &a.Key); err != nil {
			return nil, fmt.Errorf("list actors to recover: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

type stored struct {
	found  bool
	header []byte
	rows   map[string][]byte
	wake   time.Time
	idle   bool
}

// load reads one actor. It runs in the actor's process, concurrently with the writer
// (WAL readers do not block it). The router spawns a process only once every record
// of the previous one is committed, so what load sees is current.
func (s *store) load(a actors.Addr) (st stored, err error) {
	var wake int64
	err = s.loadActor.QueryRow(a.Kind, a.Key).Scan(&st.header, &wake, &st.idle)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("load %s: %w", a, err)
	}
	st.found = true
	if wake > 0 {
		st.wake = time.UnixMilli(wake)
	}
	rows, err := s.loadRows.Query(a.Kind, a.Key)
	if err != nil {
		return st, fmt.Errorf("load rows of %s: %w", a, err)
	}
	defer rows.Close()
	st.rows = map[string][]byte{}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return st, fmt.Errorf("load rows of %s: %w", a, err)
		}
		st.rows[k] = v
	}
	return st, rows.Err()
}

// submit queues a record for the writer; it blocks while the queue is full, which is
// the back-pressure on actors that outrun the disk.
func (s *store) submit(r *record) {
	select {
	case s.in <- r:
	case <-s.dead:
	}
}

// run is the writer: it takes what is queued (up to maxBatch), commits it in one
// transaction and hands the batch to dispatch, until stop.
func (s *store) run(dispatch func([]*record)) {
	defer close(s.dead)
	for {
		var batch []*record
		select {
		case r := <-s.in:
			batch = s.fill(append(make([]*record, 0, 16), r))
		case <-s.quit:
			// Commit what actors had queued when Stop began, unless told to abandon it.
			for n := len(s.in); n > 0; n -= s.maxBatch {
				select {
				case <-s.abandon:
					return
				case r := <-s.in:
					batch = s.fill(append(make([]*record, 0, 16), r))
				}
				if s.commit(batch) != nil {
					return
				}
				dispatch(batch)
			}
			return
		}
		if s.commit(batch) != nil {
			return
		}
		dispatch(batch)
	}
}

// lose fails a batch whose commit failed past the retry bound: every caller gets the
// error, no effect is performed, and each process is dropped so that the next message
// loads the actor's last durable state; its later records fail too (lostPIDs).
func (s *store) lose(batch []*record, err error) {
	err = fmt.Errorf("%w: %w", ErrStorage, err)
	for _, r := range batch {
		s.lostPIDs[r.pid] = true
		if r.err == nil {
			r.err = fmt.Errorf("%s: %w", r.addr, err)
		}
		r.broken, r.lost, r.effects, r.wakeChanged, r.meta, r.rows = true, true, nil, false, false, nil
	}
}

// fill adds what is queued to batch, waiting up to maxDelay for more.
func (s *store) fill(batch []*record) []*record {
	var deadline <-chan time.Time
	if s.maxDelay > 0 {
		t := time.NewTimer(s.maxDelay)
		defer t.Stop()
		deadline = t.C
	}
	for len(batch) < s.maxBatch {
		select {
		case r := <-s.in:
			batch = append(batch, r)
			continue
		default:
		}
		if deadline == nil {
			break
		}
		select {
		case r := <-s.in:
			batch = append(batch, r)
		case <-deadline:
			return batch
		}
	}
	return batch
}

// commit writes batch in one transaction. A failure (a full disk may drain) is retried
// with backoff for up to retry, then the batch is lost (see lose); while commits keep
// failing, later batches get one try each. It returns an error only when Stop
// abandons the batch.
func (s *store) commit(batch []*record) error {
	for _, r := range batch {
		if s.lostPIDs[r.pid] {
			s.lose([]*record{r}, errors.New("an earlier message of this actor was not stored"))
		}
	}
	backoff := 10 * time.Millisecond
	deadline := time.Now().Add(s.retry)
	if s.failing.Load() != nil {
		deadline = time.Now() // already failing: one try
	}
	freed := false
	for {
		err := s.write(batch)
		if err == nil {
			s.failing.Store(nil)
			return nil
		}
		s.failing.Store(&err)
		if !freed && s.onError != nil && s.onError(err) {
			freed = true
			s.log.Warn("actor state commit failed; space was freed, retrying", "records", len(batch), "err", err)
			continue
		}
		if !time.Now().Before(deadline) {
			s.log.Error("actor state commit failed; its messages are lost", "records", len(batch), "err", err)
			s.lose(batch, err)
			lost := fmt.Errorf("%w: %w", ErrStorage, err)
			s.failing.Store(&lost)
			return nil
		}
		s.log.Error("actor state commit failed; retrying", "records", len(batch), "err", err, "retry_in", backoff)
		select {
		case <-s.abandon:
			return err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *store) write(batch []*record) (err error) {
	writes := false
	for _, r := range batch {
		if r.meta || len(r.rows) > 0 {
			writes = true
			break
		}
	}
	if !writes {
		return nil
	}
	if s.failWrite != nil {
		if err := s.failWrite(); err != nil {
			return err
		}
	}
	// A background context: a commit is short, and cancelling one midway helps nobody.
	ctx := context.Background()
	if _, err := s.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_, _ = s.conn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	for _, r := range batch {
		if r.meta {
			wake := int64(0)
			if !r.wake.IsZero() {
				wake = r.wake.UnixMilli()
			}
			if r.header != nil {
				_, err = s.upsert.ExecContext(ctx, r.addr.Kind, r.addr.Key, r.header, wake, r.idle)
			} else {
				_, err = s.setMeta.ExecContext(ctx, wake, r.idle, r.addr.Kind, r.addr.Key)
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", r.addr, err)
			}
		}
		for _, w := range r.rows {
			if w.Value == nil {
				_, err = s.delRow.ExecContext(ctx, r.addr.Kind, r.addr.Key, w.Key)
			} else {
				_, err = s.putRow.ExecContext(ctx, r.addr.Kind, r.addr.Key, w.Key, w.Value)
			}
			if err != nil {
				return fmt.Errorf("write %s row %q: %w", r.addr, w.Key, err)
			}
		}
	}
	if _, err = s.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.commits.Add(1)
	s.committed.Add(int64(len(batch)))
	return nil
}

// stop ends the writer (abandoning queued records if ctx ends first) and closes the
// database.
func (s *store) stop(ctx context.Context) error {
	if ctx.Err() != nil {
		close(s.abandon)
	}
	close(s.quit)
	if ctx.Err() == nil {
		select {
		case <-s.dead:
		case <-ctx.Done():
			close(s.abandon)
		}
	}
	<-s.dead // at most the commit in progress
	return s.close()
}

func (s *store) close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.upsert, s.setMeta, s.putRow, s.delRow, s.loadActor, s.loadRows} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.conn != nil {
		errs = append(errs, s.conn.Close())
	}
	for _, db := range []*sql.DB{s.rdb, s.wdb} {
		if db != nil {
			errs = append(errs, db.Close())
		}
	}
	return errors.Join(errs...)
}
