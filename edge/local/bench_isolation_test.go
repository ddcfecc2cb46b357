package local_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// BenchmarkIsolationCost measures what bubblewrap adds to a run: dispatch to a
// completed `true` step, each run on a commit of its own so that each starts a new
// agent (a cold sandbox: bwrap, agent start, clone, command), with and without
// isolation. Run with -benchtime=10x (one commit per iteration).
func BenchmarkIsolationCost(b *testing.B) {
	for _, isolate := range []bool{false, true} {
		b.Run(fmt.Sprintf("isolate=%v", isolate), func(b *testing.B) {
			st, err := local.Open(context.Background(), local.Options{
				DataDir: b.TempDir(), Addr: "127.0.0.1:0", Getenv: env{}.get, NoIsolation: !isolate,
				AgentCommand: []string{flareBin, "agent"}, Runs: runs.Registry(),
			})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close(context.Background())
			repo, shas := gittest.Repo(b, b.N)
			b.ResetTimer()
			for i := range b.N {
				r := dispatch(b, st, "offload-test", offloadBody(repo, shas[i], "true", nil), fmt.Sprintf("iso-%d", i))
				if v := waitDone(b, st, r.body["executionId"].(string), 60*time.Second); v.Execution.Status != "success" {
					b.Fatalf("run %d: %s", i, v.Execution.Status)
				}
			}
		})
	}
}
