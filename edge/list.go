package edge

import (
	"net/http"
	"strconv"
	"time"
)

// ExecutionFilter selects executions (Metadata.ListExecutions).
type ExecutionFilter struct {
	Run, Repo, Status string
	SHA               string    // the commit; "" = any
	Parent            string    // children of this execution; "" = any
	Before            time.Time // started strictly before; zero = no bound
	Limit             int
}

// listExecutions serves GET /v1/executions (contract §3): the admin bearer, filters
// run, repo and status, newest first, `before` (ms) keyset paging with nextBefore.
func (s *Server) listExecutions(w http.ResponseWriter, r *http.Request) {
	if s.Config.AdminToken == "" {
		writeError(w, http.StatusServiceUnavailable, "admin_not_configured", "ADMIN_TOKEN is unset on this deploy")
		return
	}
	if !constantEqual(bearer(r), s.Config.AdminToken) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Authorization: Bearer ADMIN_TOKEN required")
		return
	}
	q := r.URL.Query()
	f := ExecutionFilter{Run: q.Get("run"), Repo: q.Get("repo"), Status: q.Get("status"), Limit: 50}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_query", "limit must be an integer (1..200)", "field", "limit")
			return
		}
		f.Limit = min(max(n, 1), 200)
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			writeError(w, http.StatusBadRequest, "invalid_query", "before must be a time in milliseconds since the epoch (a nextBefore)", "field", "before")
			return
		}
		f.Before = time.UnixMilli(n)
	}
	limit := f.Limit
	f.Limit++ // one more tells whether there is a next page
	rows, err := s.Meta.ListExecutions(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return
	}
	var next any // null on the last page
	if len(rows) > limit {
		// Never split executions started in the same millisecond across pages: the
		// next page starts strictly before nextBefore.
		cut := limit
		for cut > 0 && rows[cut-1].StartedAt.UnixMilli() == rows[limit].StartedAt.UnixMilli() {
			cut--
		}
		if cut == 0 {
			cut = limit
		}
		rows = rows[:cut]
		next = rows[cut-1].StartedAt.UnixMilli()
	}
	origin := s.origin(r)
	items := make([]map[string]any, 0, len(rows))
	for _, e := range rows {
		it := map[string]any{"id": e.ID, "run": e.Run, "repo": e.Repo, "ref": e.Ref, "sha": e.SHA, "status": e.Status,
			"startedAt": e.StartedAt, "logsUrl": s.LogLink(origin, e.ID)}
		if !e.CompletedAt.IsZero() {
			it["completedAt"] = e.CompletedAt
		}
		if e.Parent != "" {
			it["parentExecutionId"] = e.Parent
		}
		if e.CheckRunID != 0 {
			it["checkRunId"] = e.CheckRunID
		}
		if e.Cost != nil {
			it["cost"] = e.Cost
		}
		items = append(items, it)
	}
	writeJSON(w, http.StatusOK, map[string]any{"executions": items, "nextBefore": next})
}
