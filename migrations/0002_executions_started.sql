-- GET /v1/executions lists newest first, filtered by run, repo or status, paged on
-- started_at (the run filter uses executions_run).
CREATE INDEX IF NOT EXISTS executions_started ON executions(started_at);
