//go:build !js

package workertest

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge/porttest"
)

// TestPortContractsInTheWorker runs the Metadata, KV and Actors contracts inside the
// Worker (POST /__dev/contract/{port}): sqlmeta compiled to wasm over the D1 binding of
// wrangler dev, and the edge's Actors port over the Durable Object stubs, the same code
// and bindings as deployed. The Worker reports each
// subtest; every one must have run (the names are the suite's) and passed.
func TestPortContractsInTheWorker(t *testing.T) {
	w := start(t, Options{PersistDir: t.TempDir(), Migrate: true})
	for _, port := range []string{"metadata", "kv", "actors"} {
		t.Run(port, func(t *testing.T) {
			res, err := client.Post(w.URL+"/__dev/contract/"+port, "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var results []porttest.Result
			if err := json.NewDecoder(res.Body).Decode(&results); res.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("contract %s: %d %v", port, res.StatusCode, err)
			}
			var names []string
			for _, r := range results {
				names = append(names, r.Name)
				t.Run(r.Name, func(t *testing.T) {
					for _, f := range r.Failures {
						t.Error(f)
					}
				})
			}
			slices.Sort(names)
			want := slices.Sorted(slices.Values(porttest.Cases(port)))
			if !slices.Equal(names, want) {
				t.Fatalf("the Worker ran %v\nwant %v", names, want)
			}
		})
	}
}
