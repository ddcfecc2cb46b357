package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/testruns"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// The DSL's capabilities on the local stack: durable sleep through suspension (also
// across a restart of the whole stack), the sandbox's extra operations, artifacts
// through the edge's route, configuration and earlier executions through the agent
// API, and installCached against the real npm registry and Go module proxy.

// dslStack is a stack with the DSL test runs registered, on addr ("" = any port) and
// data directory dir ("" = a new one).
func dslStack(t *testing.T, vars env, addr, dir string) *local.Stack {
	t.Helper()
	if vars == nil {
		vars = env{}
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if dir == "" {
		dir = t.TempDir()
	}
	reg := runs.Registry()
	for _, r := range testruns.DSL() {
		reg[r.Spec().Name] = r
	}
	st, err := local.Open(context.Background(), local.Options{
		DataDir: dir, Addr: addr, Getenv: vars.get, AgentCommand: []string{flareBin, "agent"}, Runs: reg,
		NoIsolation: true, // the test runs write side files beside the stack, which a sandbox cannot
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func freePort(t *testing.T) int {
	_, port, _ := net.SplitHostPort(freeAddr(t))
	var n int
	fmt.Sscan(port, &n)
	return n
}

func TestSleepSuspendsTheRunAndResumesIt(t *testing.T) {
	st := dslStack(t, env{"ADMISSION_CAP": "1"}, "", "")
	defer st.Close(context.Background())
	marker := filepath.Join(t.TempDir(), "marker")
	r := dispatch(t, st, "test-sleep", runBody("test-sleep", "", "abc1234", map[string]any{"sleepMs": 7000, "marker": marker}), "sleep-1")
	id := r.body["executionId"].(string)

	// While it sleeps the run is waiting, and another run gets the only slot.
	deadline := time.Now().Add(30 * time.Second)
	for executionView(t, st, id).Execution.Status != "waiting" {
		if time.Now().After(deadline) {
			t.Fatalf("never waiting: %+v", executionView(t, st, id).Execution)
		}
		time.Sleep(50 * time.Millisecond)
	}
	repo, shas := gittest.Repo(t, 1)
	other := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "echo meanwhile", nil), "while-sleeping")
	if v := waitDone(t, st, other.body["executionId"].(string), 30*time.Second); v.Execution.Status != "success" {
		t.Fatalf("the other run: %s", v.Execution.Status)
	}
	if s := executionView(t, st, id).Execution.Status; s != "waiting" {
		t.Fatalf("status %s while the other run ran (the sleep is 7 s)", s)
	}

	v := waitDone(t, st, id, 60*time.Second)
	if v.Execution.Status != "success" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	var out struct {
		Attempt int   `json:"attempt"`
		SleptMs int64 `json:"sleptMs"`
	}
	json.Unmarshal(v.Summary, &out)
	if out.Attempt < 2 || out.SleptMs < 7000 {
		t.Fatalf("output %s: want a later attempt after at least 7 s", v.Summary)
	}
	b, _ := os.ReadFile(marker)
	if got := strings.Fields(string(b)); strings.Join(got, ",") != "before,after" {
		t.Fatalf("steps ran %v; each once in order", got)
	}
}

func TestSleepOutlivesARestartOfTheStack(t *testing.T) {
	addr, dir := freeAddr(t), t.TempDir()
	st := dslStack(t, nil, addr, dir)
	marker := filepath.Join(t.TempDir(), "marker")
	r := dispatch(t, st, "test-sleep", runBody("test-sleep", "", "abc1234", map[string]any{"sleepMs": 8000, "marker": marker}), "sleep-restart")
	id := r.body["executionId"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for executionView(t, st, id).Execution.Status != "waiting" {
		if time.Now().After(deadline) {
			t.Fatal("never waiting")
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.Close(context.Background())

	st = dslStack(t, nil, addr, dir)
	defer st.Close(context.Background())
	v := waitDone(t, st, id, 60*time.Second)
	if v.Execution.Status != "success" {
		t.Fatalf("status %s after the restart: %s", v.Execution.Status, v.Check.Summary)
	}
	b, _ := os.ReadFile(marker)
	if got := strings.Fields(string(b)); strings.Join(got, ",") != "before,after" {
		t.Fatalf("steps ran %v; each once in order", got)
	}
}

func TestCapabilitiesOnTheLocalSandbox(t *testing.T) {
	st := dslStack(t, nil, "", "")
	defer st.Close(context.Background())
	if err := st.Config.Put(context.Background(), "test-caps.greeting", "hello from CONFIG_KV", 0); err != nil {
		t.Fatal(err)
	}
	repo, sha := repoWith(t, map[string]string{"README.md": "# caps\n", "site/index.html": "<h1>site</h1>", "site/css/a.css": "a{}"})
	port := freePort(t)
	inputs := map[string]any{"repo": repo, "sha": sha, "port": port}
	r := dispatch(t, st, "test-caps", runBody("test-caps", repo, sha, inputs), "test-caps:first")
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 60*time.Second)
	if v.Execution.Status != "success" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	var out testruns.CapsOutput
	if err := json.Unmarshal(v.Summary, &out); err != nil {
		t.Fatal(err)
	}
	switch {
	case out.Readme != "# caps\n":
		t.Fatalf("readFile %q", out.Readme)
	case out.ExposedURL != fmt.Sprintf("http://127.0.0.1:%d", port):
		t.Fatalf("exposePort %q", out.ExposedURL)
	case out.Probes.Checked != 2 || out.Probes.Failed != 1 || out.Probes.Results[0].Status != 200 || out.Probes.Results[1].Status != 404:
		t.Fatalf("probes %+v", out.Probes)
	case out.DetachedExit != 3:
		t.Fatalf("detached exit %d", out.DetachedExit)
	case len(out.Changes) != 1 || out.Changes[0].Path != "extra.txt" || out.Changes[0].Mode != "100644":
		t.Fatalf("changes %+v", out.Changes)
	case out.Greeting != "hello from CONFIG_KV":
		t.Fatalf("config %q", out.Greeting)
	case !strings.Contains(out.Forbidden, "config_key_not_allowed"):
		t.Fatalf("reading another run's key: %q", out.Forbidden)
	case out.Prior != "":
		t.Fatalf("prior %q on the first execution", out.Prior)
	case len(out.Artifacts) != 2 || out.Artifacts[0].Name != "readme.txt" || !out.Artifacts[1].Dir || out.Artifacts[1].Files != 2:
		t.Fatalf("artifacts %+v", out.Artifacts)
	}

	// The artifacts through the edge: a file, a directory's files, index, tarball, listing.
	base := st.URL + "/v1/artifacts/" + id
	for _, c := range []struct {
		path, want string
		status     int
	}{
		{"/readme.txt", "# caps\n", 200},
		{"/site/css/a.css", "a{}", 200},
		{"/site/", "<h1>site</h1>", 200},
		{"/site/css/", "a.css", 200},
		{"/readme.txt/", "", 404},
		{"/nope", "", 404},
		{"/site/css", "", 404},
	} {
		got := get(t, base+c.path)
		if got.status != c.status || !strings.Contains(string(got.raw), c.want) {
			t.Errorf("GET %s: %d %.200s", c.path, got.status, got.raw)
		}
	}
	if detail := get(t, st.URL+"/v1/executions/"+id+"?t="+token(st, id)); !strings.Contains(string(detail.raw), `"artifacts":[{"name":"readme.txt","size":7,"url":"`+st.URL+`/v1/artifacts/`+id+`/readme.txt"},{"name":"site"`) {
		t.Errorf("execution details lack the artifacts: %s", detail.raw)
	}
	if tgz := get(t, base+"/site"); tgz.status != 200 || len(tgz.raw) < 20 || tgz.raw[0] != 0x1f || tgz.raw[1] != 0x8b {
		t.Errorf("GET /site: %d, not a gzip", tgz.status)
	}

	// A second execution sees the first as its prior.
	r = dispatch(t, st, "test-caps", runBody("test-caps", repo, sha, map[string]any{"repo": repo, "sha": sha, "port": freePort(t)}), "test-caps:second")
	v = waitDone(t, st, r.body["executionId"].(string), 60*time.Second)
	json.Unmarshal(v.Summary, &out)
	if !strings.HasPrefix(out.Prior, "test-caps:first success") {
		t.Fatalf("prior %q", out.Prior)
	}
}
