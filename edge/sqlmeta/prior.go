package sqlmeta

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

var _ edge.PriorExecutions = (*Store)(nil)

// PriorExecution implements edge.PriorExecutions: the newest finished execution whose
// id starts with family+":", other than exclude.
//
// The prefix is a byte range, [family+":", family+";"), not a LIKE: D1 refuses LIKE
// patterns over 50 bytes ("LIKE or GLOB pattern too complex"), which a family with a
// key easily is (found by the Metadata contract in the Worker); the range also needs no
// escaping and walks the primary key's index.
func (s *Store) PriorExecution(ctx context.Context, family, exclude string) (edge.Execution, bool, error) {
	var e edge.Execution
	var completed sql.NullInt64
	var summary sql.NullString
	err := s.reads().QueryRowContext(ctx, `SELECT id, status, completed_at, summary_json FROM executions
		WHERE id >= ? AND id < ? AND id <> ? AND completed_at IS NOT NULL
		ORDER BY completed_at DESC, id DESC LIMIT 1`, family+":", family+";", exclude).Scan(&e.ID, &e.Status, &completed, &summary)
	if errors.Is(err, sql.ErrNoRows) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("prior execution of %s: %w", family, err)
	}
	e.CompletedAt = fromMS(completed)
	if summary.Valid {
		e.Summary = []byte(summary.String)
	}
	return e, true, nil
}
