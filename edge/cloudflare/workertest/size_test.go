//go:build !js

package workertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/internal/ci"
)

// The Worker's bundle budget is 3 MiB gzip (specs/cloudflare.md). Most of what once
// went over it was net/http's client: any call of (*http.Client).Do reaches
// http.DefaultTransport, and with it crypto/tls, x509 and the dialer, about 1.1 MB
// gzip; go-github (which needs an *http.Client) and aws-sdk-go-v2 add more. This test
// fails when any of them is linked into the Worker again, and names the package.
func TestWorkerLinksNoHTTPClientNorHeavySDK(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	wasm := filepath.Join(t.TempDir(), "app.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-o", wasm, "./edge/cloudflare/cmd/worker")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the Worker: %v\n%s", err, out)
	}
	funcs, _, err := WasmFuncs(wasm)
	if err != nil {
		t.Fatal(err)
	}
	if len(funcs) < 1000 {
		t.Fatalf("only %d functions named: the name section was not read", len(funcs))
	}
	// Linker names: "/", "-" and "." in a package path become "_" (but the last ".").
	forbidden := map[string]string{
		"net_http.__Transport_.":                  "net/http's client transport (use cloudflare.FetchTransport, never *http.Client)",
		"crypto_tls.__Conn_.":                     "crypto/tls connections",
		"github.com_google_go_github":             "go-github (the Worker uses edge/cloudflare/ghapp)",
		"github.com_aws_aws_sdk_go_v2":            "aws-sdk-go-v2 (the Worker reaches R2 through its binding)",
		"github.com_syumai_workers_cloudflare_r2": "syumai/workers' r2 (edge/cloudflare/r2 streams)",
	}
	seen := map[string]string{}
	for _, f := range funcs {
		for prefix, what := range forbidden {
			if strings.HasPrefix(f.Name, prefix) && seen[what] == "" {
				seen[what] = f.Name
			}
		}
	}
	for what, example := range seen {
		t.Errorf("the Worker links %s (e.g. %s)", what, example)
	}
}

// budgetKiB is the bundle budget: 4 MB gzip (wrangler's figure), build.sh's ceiling and
// under issue 15's 4 MiB. The free plan's 3 MiB does not bind: Containers, which every
// run needs, require Workers Paid, whose limit is 10 MiB. build.sh still warns above
// 3 MiB, and each addition's cost is recorded in specs/cloudflare.md (Sizes).
const budgetKiB = 3906

// TestBundleFitsTheBudget runs `wrangler deploy --dry-run` (worker/build.sh) and checks
// the gzip size wrangler reports.
func TestBundleFitsTheBudget(t *testing.T) {
	ci.SkipShort(t, "builds the bundle with wrangler")
	root := Require(t)
	upload, gz, err := DryRun(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wrangler deploy --dry-run: %.2f KiB, gzip %.2f KiB", upload, gz)
	if gz > budgetKiB {
		t.Fatalf("the bundle is %.2f KiB gzip, over the %d KiB budget: see specs/cloudflare.md (Sizes) for what is big "+
			"(go run ./edge/cloudflare/cmd/workerbench -sizes)", gz, budgetKiB)
	}
}
