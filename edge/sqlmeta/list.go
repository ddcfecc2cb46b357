package sqlmeta

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// ListExecutions implements edge.Metadata: newest first, never input_json; with each
// row the start of its first step (queue wait) and its cost, when recorded. One query
// serves GET /v1/executions, the dashboard and a fan-out's children.
func (s *Store) ListExecutions(ctx context.Context, f edge.ExecutionFilter) ([]edge.ExecutionListing, error) {
	q := `SELECT e.id, e.run, e.repo, e.ref, e.sha, e.status, e.started_at, e.completed_at, e.parent_execution_id, e.check_run_id,
		(SELECT MIN(st.started_at) FROM steps st WHERE st.execution_id = e.id), c.cost_json
		FROM executions e LEFT JOIN execution_costs c ON c.execution_id = e.id WHERE 1 = 1`
	var args []any
	for _, w := range []struct{ col, v string }{{"e.run", f.Run}, {"e.repo", f.Repo}, {"e.sha", f.SHA}, {"e.status", f.Status}, {"e.parent_execution_id", f.Parent}} {
		if w.v != "" {
			q += " AND " + w.col + " = ?"
			args = append(args, w.v)
		}
	}
	if !f.Before.IsZero() {
		q += " AND e.started_at < ?"
		args = append(args, f.Before.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += " ORDER BY e.started_at DESC, e.id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.reads().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list executions: %w", err)
	}
	defer rows.Close()
	var out []edge.ExecutionListing
	for rows.Next() {
		var l edge.ExecutionListing
		var started, completed, check, first sql.NullInt64
		var parent, cost sql.NullString
		if err := rows.Scan(&l.ID, &l.Run, &l.Repo, &l.Ref, &l.SHA, &l.Status, &started, &completed, &parent, &check, &first, &cost); err != nil {
			return nil, fmt.Errorf("list executions: %w", err)
		}
		l.StartedAt, l.CompletedAt, l.FirstStepAt = fromMS(started), fromMS(completed), fromMS(first)
		l.Parent, l.CheckRunID = parent.String, check.Int64
		if cost.Valid {
			var c edge.Cost
			if json.Unmarshal([]byte(cost.String), &c) == nil {
				l.Cost = &c
			}
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// PutCost implements edge.Metadata.
func (s *Store) PutCost(ctx context.Context, exec string, c edge.Cost) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("put cost %s: %w", exec, err)
	}
	_, err = s.writes().ExecContext(ctx, `INSERT INTO execution_costs (execution_id, cost_json, cloudflare_micro_usd, github_micro_usd)
		VALUES (?, ?, ?, ?) ON CONFLICT(execution_id) DO UPDATE SET cost_json = excluded.cost_json,
		cloudflare_micro_usd = excluded.cloudflare_micro_usd, github_micro_usd = excluded.github_micro_usd`,
		exec, string(b), c.CloudflareMicro, c.GitHubMicro)
	if err != nil {
		return fmt.Errorf("put cost %s: %w", exec, err)
	}
	return nil
}

// CostTotals implements edge.Metadata: months are UTC, by the execution's start.
func (s *Store) CostTotals(ctx context.Context, f edge.CostFilter) ([]edge.CostTotal, error) {
	q := `SELECT e.repo, strftime('%Y-%m', e.started_at / 1000, 'unixepoch') AS month, COUNT(*),
		SUM(c.cloudflare_micro_usd), SUM(c.github_micro_usd)
		FROM execution_costs c JOIN executions e ON e.id = c.execution_id
		WHERE e.parent_execution_id IS NULL`
	var args []any
	if f.Repo != "" {
		q += " AND e.repo = ?"
		args = append(args, f.Repo)
	}
	if !f.Since.IsZero() {
		q += " AND e.started_at >= ?"
		args = append(args, f.Since.UnixMilli())
	}
	q += " GROUP BY e.repo, month ORDER BY month DESC, e.repo LIMIT 500"
	rows, err := s.reads().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("cost totals: %w", err)
	}
	defer rows.Close()
	var out []edge.CostTotal
	for rows.Next() {
		var t edge.CostTotal
		if err := rows.Scan(&t.Repo, &t.Month, &t.Executions, &t.CloudflareMicro, &t.GitHubMicro); err != nil {
			return nil, fmt.Errorf("cost totals: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
