-- The metadata tables: an idempotent projection of the run actors (their journal is
-- the truth). One file for D1 and local SQLite: no PRAGMAs, integer-ms times, TEXT JSON.
CREATE TABLE IF NOT EXISTS executions (
  id TEXT PRIMARY KEY,
  run TEXT NOT NULL,
  repo TEXT NOT NULL,
  ref TEXT NOT NULL,
  sha TEXT NOT NULL,
  status TEXT NOT NULL,          -- queued|admitted|leased|running|success|failure|cancelled|timed_out
  started_at INTEGER,
  completed_at INTEGER,
  parent_execution_id TEXT,
  input_json TEXT NOT NULL,
  summary_json TEXT,
  check_run_id INTEGER
);
CREATE INDEX IF NOT EXISTS executions_repo_sha ON executions(repo, sha);
CREATE INDEX IF NOT EXISTS executions_run ON executions(run, started_at);
CREATE INDEX IF NOT EXISTS executions_parent ON executions(parent_execution_id);

CREATE TABLE IF NOT EXISTS steps (
  id TEXT PRIMARY KEY,            -- <execution>:<name>
  execution_id TEXT NOT NULL REFERENCES executions(id),
  name TEXT NOT NULL,
  status TEXT NOT NULL,           -- running|success|failure
  started_at INTEGER,
  completed_at INTEGER,
  exit_code INTEGER,
  log_uri TEXT,
  attempt INTEGER NOT NULL DEFAULT 1,
  error_tag TEXT
);
CREATE INDEX IF NOT EXISTS steps_execution ON steps(execution_id);

-- Key/value with expiry for the local build (CONFIG_KV and IDEMPOTENCY_KV are KV
-- namespaces on Cloudflare).
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  expires_at INTEGER             -- ms, NULL = never
);
