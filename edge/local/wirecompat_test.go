package local_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/testruns"
	"github.com/flare-dispatch/flare-dispatch/internal/wirecompat"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// TestWireCompat runs the original's requests (internal/wirecompat) against the
// embedded stack; edge/cloudflare/workertest runs the same tables against the Worker.
func TestWireCompat(t *testing.T) {
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	vars := env{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM),
		"GITHUB_API_URL": gh.URL(), "GITHUB_WEBHOOK_SECRET": "wire-compat-hook"}
	reg := runs.Registry()
	for _, r := range testruns.All() {
		reg[r.Spec().Name] = r
	}
	st, err := local.Open(context.Background(), local.Options{DataDir: t.TempDir(), Addr: "127.0.0.1:0", Getenv: vars.get,
		AgentCommand: []string{flareBin, "agent"}, Runs: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	if err := st.Config.Put(context.Background(), wirecompat.ConfigKey, wirecompat.ConfigValue, 0); err != nil {
		t.Fatal(err)
	}
	repo, shas := gittest.Repo(t, 1)
	tg := wirecompat.Target{URL: st.URL, HMACSecret: st.Secrets.HMACSecret, AdminToken: st.Secrets.AdminToken,
		CheckRuns: func(repo string) int { return len(gh.CheckRuns(repo)) }, WebhookSecret: "wire-compat-hook",
		Installation: inst, InstalledRepo: "acme/app", AddCommit: gh.AddCommitSHA, Repo: repo, RepoSHA: shas[0],
		IdempotencyGet: func(t *testing.T, key string) (string, bool) {
			v, ok, err := st.Idempotency.Get(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			return v, ok
		}}
	t.Run("dispatch", func(t *testing.T) { wirecompat.TestDispatch(t, tg) })
	t.Run("learned installation", func(t *testing.T) { wirecompat.TestLearnedInstallation(t, tg) })
	t.Run("list executions", func(t *testing.T) { wirecompat.TestListExecutions(t, tg) })
	t.Run("run skipped", func(t *testing.T) { wirecompat.TestRunSkipped(t, tg) })
	t.Run("CONFIG_KV and IDEMPOTENCY_KV", func(t *testing.T) { wirecompat.TestConfigKV(t, tg) })
}
