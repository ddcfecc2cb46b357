//go:build !js

package workertest

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/wirecompat"
)

// TestWorkerWireCompat runs the original's requests (internal/wirecompat) against the
// Worker under wrangler dev; edge/local runs the same tables against the local stack.
func TestWorkerWireCompat(t *testing.T) {
	s := startEdgeWith(t, map[string]string{"GITHUB_WEBHOOK_SECRET": hookSecret},
		map[string]map[string]string{"CONFIG_KV": {wirecompat.ConfigKey: wirecompat.ConfigValue}})
	repo, shas := gittest.Repo(t, 1)
	tg := wirecompat.Target{URL: s.URL, HMACSecret: hmacSecret, AdminToken: adminToken,
		CheckRuns: func(repo string) int { return len(s.gh.CheckRuns(repo)) }, WebhookSecret: hookSecret,
		Installation: s.inst, InstalledRepo: "acme/app", AddCommit: s.gh.AddCommitSHA, Repo: repo, RepoSHA: shas[0],
		IdempotencyGet: func(t *testing.T, key string) (string, bool) {
			// Read through the Worker's own IDEMPOTENCY_KV binding (a /__dev/ route).
			r := s.do(t, http.MethodGet, "/__dev/kv/IDEMPOTENCY_KV/"+url.PathEscape(key), nil, nil)
			if r.status != http.StatusOK {
				t.Fatalf("/__dev/kv: %d %s", r.status, r.raw)
			}
			v, _ := r.body["value"].(string)
			return v, r.body["found"] == true
		}}
	t.Run("dispatch", func(t *testing.T) { wirecompat.TestDispatch(t, tg) })
	t.Run("learned installation", func(t *testing.T) { wirecompat.TestLearnedInstallation(t, tg) })
	t.Run("list executions", func(t *testing.T) { wirecompat.TestListExecutions(t, tg) })
	t.Run("run skipped", func(t *testing.T) { wirecompat.TestRunSkipped(t, tg) })
	t.Run("CONFIG_KV and IDEMPOTENCY_KV", func(t *testing.T) { wirecompat.TestConfigKV(t, tg) })
}
