package local_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// BenchmarkMatrixFanout8Shards runs a real test suite — this repository's own Go tests
// (every package but the local stack's and the Worker's), at its HEAD — as one
// offload-test and as a matrix-fanout of 8 shards on the local stack, and reports both
// wall times (dispatch to completed check). Packages are dealt round-robin to shards by
// SHARD_INDEX/SHARD_TOTAL. The build cache and module cache are the machine's (warm), so
// the figures are about running the suite, not compiling the world. It takes minutes:
// FLARE_BENCH_MATRIX=1 turns it on; FLARE_BENCH_REF picks the commit (default HEAD),
// FLARE_BENCH_COMMAND replaces the suite (e.g. "true", to measure the fan-out itself).
func BenchmarkMatrixFanout8Shards(b *testing.B) {
	if os.Getenv("FLARE_BENCH_MATRIX") == "" {
		b.Skip("set FLARE_BENCH_MATRIX=1 to run the 8-shard matrix benchmark")
	}
	for _, k := range []string{"GOCACHE", "GOMODCACHE"} {
		if os.Getenv(k) == "" {
			out, _ := exec.Command("go", "env", k).Output()
			b.Setenv(k, strings.TrimSpace(string(out)))
		}
	}
	repo := b.TempDir()
	if out, err := exec.Command("git", "clone", "-q", "../..", repo).CombinedOutput(); err != nil {
		b.Fatalf("clone: %v\n%s", err, out)
	}
	ref := os.Getenv("FLARE_BENCH_REF") // a commit whose suite passes; default HEAD
	if ref == "" {
		ref = "HEAD"
	}
	out, _ := exec.Command("git", "-C", repo, "rev-parse", ref).Output()
	sha := strings.TrimSpace(string(out))
	suite := `go test -count=1 $(go list ./... | grep -v -e /edge/local -e /edge/cloudflare -e /cmd/ | awk -v i="$SHARD_INDEX" -v n="$SHARD_TOTAL" 'NR % n == i - 1')`
	if c := os.Getenv("FLARE_BENCH_COMMAND"); c != "" { // e.g. "true": the fan-out's own overhead
		suite = c
	}
	st := startStack(b, nil)
	for b.Loop() {
		t0 := time.Now()
		r := dispatch(b, st, "offload-test", offloadBody(repo, sha, suite, map[string]any{
			"env": map[string]string{"SHARD_INDEX": "1", "SHARD_TOTAL": "1"}, "timeoutSec": 1800}), fmt.Sprintf("serial-%d", time.Now().UnixNano()))
		v := waitDone(b, st, r.body["executionId"].(string), 30*time.Minute)
		serial := time.Since(t0)
		if v.Execution.Status != "success" {
			b.Fatalf("serial run: %s\n%s", v.Execution.Status, v.Check.Summary)
		}
		t0 = time.Now()
		r = dispatch(b, st, "matrix-fanout", runBody("matrix-fanout", repo, sha, map[string]any{
			"repo": repo, "sha": sha, "command": suite, "shards": 8, "timeoutSec": 1800}), fmt.Sprintf("matrix-%d", time.Now().UnixNano()))
		v = waitDone(b, st, r.body["executionId"].(string), 30*time.Minute)
		matrix := time.Since(t0)
		if v.Execution.Status != "success" {
			b.Fatalf("matrix run: %s\n%s", v.Execution.Status, v.Check.Summary)
		}
		b.ReportMetric(serial.Seconds(), "serial-s")
		b.ReportMetric(matrix.Seconds(), "8shards-s")
		fmt.Printf("serial %.1f s, 8 shards %.1f s (%.2fx)\n%s\n", serial.Seconds(), matrix.Seconds(), serial.Seconds()/matrix.Seconds(), v.Check.Summary)
	}
}
