-- What each execution cost (edge/cost.go, specs/cost.md): the itemised cost as JSON and
-- the two totals the dashboard sums per repository and month. A row of its own, not
-- columns of executions, so that applying the migrations twice stays harmless.
CREATE TABLE IF NOT EXISTS execution_costs (
  execution_id TEXT PRIMARY KEY REFERENCES executions(id),
  cost_json TEXT NOT NULL,
  cloudflare_micro_usd INTEGER NOT NULL,
  github_micro_usd INTEGER NOT NULL
);
