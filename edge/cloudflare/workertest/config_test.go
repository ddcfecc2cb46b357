//go:build !js

package workertest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// wranglerConfig reads wrangler.jsonc (its // comments removed).
func wranglerConfig(t *testing.T) map[string]any {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "wrangler.jsonc"))
	if err != nil {
		t.Fatal(err)
	}
	b = regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAll(b, nil)
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("wrangler.jsonc: %v", err)
	}
	return cfg
}

// Cloudflare fires only the crons listed in wrangler.jsonc: every schedule a run
// declares must be there (contract §1, schedule mode), and nothing else.
func TestWranglerListsEveryRunsCron(t *testing.T) {
	var listed []string
	for _, c := range wranglerConfig(t)["triggers"].(map[string]any)["crons"].([]any) {
		listed = append(listed, c.(string))
	}
	slices.Sort(listed)
	want := edge.New(edge.Deps{Runs: runs.Registry()}).Crons()
	if !slices.Equal(listed, want) && !(len(listed) == 0 && len(want) == 0) {
		t.Fatalf("wrangler.jsonc triggers.crons = %q, the runs declare %q", listed, want)
	}
}

// The bindings the Go side uses exist in wrangler.jsonc under the names it uses.
func TestWranglerBindsWhatTheWorkerUses(t *testing.T) {
	cfg := wranglerConfig(t)
	names := map[string]bool{}
	for _, sec := range []string{"d1_databases", "r2_buckets", "kv_namespaces"} {
		for _, b := range cfg[sec].([]any) {
			names[b.(map[string]any)["binding"].(string)] = true
		}
	}
	for _, b := range cfg["durable_objects"].(map[string]any)["bindings"].([]any) {
		names[b.(map[string]any)["name"].(string)] = true
	}
	for _, b := range cfg["send_email"].([]any) {
		names[b.(map[string]any)["name"].(string)] = true
	}
	for _, want := range []string{"SEND_EMAIL", "RUNS_METADATA", "RUNS_STORAGE", "RUN_ACTOR", "ADMISSION_ACTOR", "LEASE_ACTOR", "RUNS_SANDBOX", "RUNS_SANDBOX_BROWSER"} {
		if !names[want] {
			t.Errorf("wrangler.jsonc has no binding %s", want)
		}
	}
}
