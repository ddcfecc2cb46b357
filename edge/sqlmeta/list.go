package sqlmeta

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// RecentExecutions implements edge.ExecutionLister: the newest executions first,
// each with the start of its first step (for queue wait).
func (s *Store) RecentExecutions(ctx context.Context, f edge.ExecutionFilter) ([]edge.ExecutionListing, error) {
	var where []string
	var args []any
	for col, v := range map[string]string{"e.run": f.Run, "e.repo": f.Repo, "e.status": f.Status} {
		if v != "" {
			where = append(where, col+" = ?")
			args = append(args, v)
		}
	}
	q := `SELECT e.id, e.run, e.repo, e.ref, e.sha, e.status, e.started_at, e.completed_at, e.parent_execution_id,
		(SELECT MIN(st.started_at) FROM steps st WHERE st.execution_id = e.id) FROM executions e`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	q += " ORDER BY e.started_at DESC, e.id LIMIT ?"
	args = append(args, limit)
	rows, err := s.DB.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("recent executions: %w", err)
	}
	defer rows.Close()
	var out []edge.ExecutionListing
	for rows.Next() {
		var l edge.ExecutionListing
		var started, completed, first sql.NullInt64
		var parent sql.NullString
		if err := rows.Scan(&l.ID, &l.Run, &l.Repo, &l.Ref, &l.SHA, &l.Status, &started, &completed, &parent, &first); err != nil {
			return nil, fmt.Errorf("recent executions: %w", err)
		}
		l.StartedAt, l.CompletedAt, l.FirstStepAt, l.Parent = fromMS(started), fromMS(completed), fromMS(first), parent.String
		out = append(out, l)
	}
	return out, rows.Err()
}
