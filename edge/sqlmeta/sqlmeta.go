// Package sqlmeta is the Metadata and KV ports over database/sql: modernc SQLite
// locally, D1 (syumai's "d1" driver) on Cloudflare. Statements are plain SQLite that
// D1 accepts: INSERT OR IGNORE, ON CONFLICT DO UPDATE, integer-ms times.
package sqlmeta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// Store is the adapter.
type Store struct {
	DB *sql.DB
	// Reads, when set, serves the queries that only read (nil: DB serves them). The
	// local stack writes through one connection (SQLite has one writer, and a Go-side
	// queue is fairer than its busy handler); in WAL mode readers need not queue
	// behind that writer's fsyncs, so reads get a pool of their own. A reader sees
	// every transaction committed before its query began: a write that has returned
	// is visible to the next read.
	Reads *sql.DB
	// Writes, when set, performs the statements that write (nil: DB performs them):
	// the local stack's group commit (edge/local/groupcommit), one transaction for the
	// writes that arrive together. It returns once the write is committed.
	Writes Execer
	// Now is the KV's clock for expiry (nil: time.Now); tests move it to check a TTL
	// at its bound.
	Now func() time.Time
}

// Execer performs a statement that writes; *sql.DB is one.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (s *Store) writes() Execer {
	if s.Writes != nil {
		return s.Writes
	}
	return s.DB
}

func (s *Store) reads() *sql.DB {
	if s.Reads != nil {
		return s.Reads
	}
	return s.DB
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

var (
	_ edge.Metadata = (*Store)(nil)
	_ edge.KV       = (*Store)(nil)
)

func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

func nullStr(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// CreateExecution implements edge.Metadata.
func (s *Store) CreateExecution(ctx context.Context, e edge.Execution) (bool, error) {
	res, err := s.writes().ExecContext(ctx, `INSERT OR IGNORE INTO executions
		(id, run, repo, ref, sha, status, started_at, parent_execution_id, input_json)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.Run, e.Repo, e.Ref, e.SHA, e.Status, ms(e.StartedAt), nullStr([]byte(e.Parent)), string(e.Input))
	if err != nil {
		return false, fmt.Errorf("insert execution %s: %w", e.ID, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// UpdateExecution implements edge.Metadata.
func (s *Store) UpdateExecution(ctx context.Context, e edge.Execution) error {
	var check any
	if e.CheckRunID != 0 {
		check = e.CheckRunID
	}
	_, err := s.writes().ExecContext(ctx, `UPDATE executions SET
		status = COALESCE(?, status),
		completed_at = COALESCE(?, completed_at),
		summary_json = COALESCE(?, summary_json),
		check_run_id = COALESCE(?, check_run_id)
		WHERE id = ?`,
		nullStr([]byte(e.Status)), ms(e.CompletedAt), nullStr(e.Summary), check, e.ID)
	if err != nil {
		return fmt.Errorf("update execution %s: %w", e.ID, err)
	}
	return nil
}

// ReopenExecution implements edge.Metadata.
func (s *Store) ReopenExecution(ctx context.Context, id string) error {
	_, err := s.writes().ExecContext(ctx, `UPDATE executions SET status = ?, completed_at = NULL, summary_json = NULL WHERE id = ?`,
		string(actors.StatusQueued), id)
	if err != nil {
		return fmt.Errorf("reopen execution %s: %w", id, err)
	}
	return nil
}

// Execution implements edge.Metadata.
func (s *Store) Execution(ctx context.Context, id string) (edge.Execution, error) {
	var e edge.Execution
	var started, completed, check sql.NullInt64
	var parent, summary sql.NullString
	var input string
	err := s.reads().QueryRowContext(ctx, `SELECT id, run, repo, ref, sha, status, started_at, completed_at,
		parent_execution_id, input_json, summary_json, check_run_id FROM executions WHERE id = ?`, id).
		Scan(&e.ID, &e.Run, &e.Repo, &e.Ref, &e.SHA, &e.Status, &started, &completed, &parent, &input, &summary, &check)
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("execution %s: %w", id, edge.ErrNotFound)
	} else if err != nil {
		return e, fmt.Errorf("execution %s: %w", id, err)
	}
	e.StartedAt, e.CompletedAt = fromMS(started), fromMS(completed)
	e.Parent, e.Input, e.CheckRunID = parent.String, []byte(input), check.Int64
	if summary.Valid {
		e.Summary = []byte(summary.String)
	}
	return e, nil
}

// PutStep implements edge.Metadata: one row per (execution, step), last write wins.
func (s *Store) PutStep(ctx context.Context, st edge.StepRow) error {
	var exit any
	if st.ExitCode != nil {
		exit = *st.ExitCode
	}
	_, err := s.writes().ExecContext(ctx, `INSERT INTO steps (id, execution_id, name, status, started_at, completed_at, exit_code, attempt, error_tag)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET status = excluded.status, started_at = COALESCE(steps.started_at, excluded.started_at),
		completed_at = excluded.completed_at, exit_code = excluded.exit_code, attempt = excluded.attempt, error_tag = excluded.error_tag`,
		st.Exec+":"+st.Name, st.Exec, st.Name, st.Status, ms(st.StartedAt), ms(st.CompletedAt), exit, st.Attempt, nullStr([]byte(st.ErrorTag)))
	if err != nil {
		return fmt.Errorf("put step %s/%s: %w", st.Exec, st.Name, err)
	}
	return nil
}

// Steps implements edge.Metadata, in start order.
func (s *Store) Steps(ctx context.Context, exec string) ([]edge.StepRow, error) {
	rows, err := s.reads().QueryContext(ctx, `SELECT name, status, attempt, started_at, completed_at, exit_code, error_tag
		FROM steps WHERE execution_id = ? ORDER BY started_at, name`, exec)
	if err != nil {
		return nil, fmt.Errorf("steps %s: %w", exec, err)
	}
	defer rows.Close()
	var out []edge.StepRow
	for rows.Next() {
		var st edge.StepRow
		var started, completed, exit sql.NullInt64
		var tag sql.NullString
		if err := rows.Scan(&st.Name, &st.Status, &st.Attempt, &started, &completed, &exit, &tag); err != nil {
			return nil, err
		}
		st.Exec, st.StartedAt, st.CompletedAt, st.ErrorTag = exec, fromMS(started), fromMS(completed), tag.String
		if exit.Valid {
			v := int(exit.Int64)
			st.ExitCode = &v
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

// Get implements edge.KV; expired keys are absent.
func (s *Store) Get(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.reads().QueryRowContext(ctx, `SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)`,
		key, s.now().UnixMilli()).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("kv get %s: %w", key, err)
	}
	return v, true, nil
}

// Put implements edge.KV.
func (s *Store) Put(ctx context.Context, key, value string, ttl time.Duration) error {
	var exp any
	if ttl > 0 {
		exp = s.now().Add(ttl).UnixMilli()
	}
	_, err := s.writes().ExecContext(ctx, `INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`, key, value, exp)
	if err != nil {
		return fmt.Errorf("kv put %s: %w", key, err)
	}
	return nil
}

// Namespace is one KV namespace of the local build (CONFIG_KV, IDEMPOTENCY_KV) in the
// kv table, its keys stored as "<Name>/<key>", apart from the edge's own state: the
// same names as the Worker's bindings (specs/config.md).
type Namespace struct {
	Store *Store
	Name  string
}

var _ edge.KV = Namespace{}

// Get implements edge.KV.
func (n Namespace) Get(ctx context.Context, key string) (string, bool, error) {
	return n.Store.Get(ctx, n.Name+"/"+key)
}

// Put implements edge.KV.
func (n Namespace) Put(ctx context.Context, key, value string, ttl time.Duration) error {
	return n.Store.Put(ctx, n.Name+"/"+key, value, ttl)
}
