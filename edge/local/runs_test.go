package local_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
)

// The command runs end to end on the local stack: real git repositories, real
// commands in agent processes, child executions for matrix-fanout, a local HTTP server
// for deploy-smoke and the fake GitHub for refresh-fixtures' writeback.

func runBody(run, repo, sha string, inputs map[string]any) map[string]any {
	return map[string]any{"run": run, "github": map[string]any{"repo": "local/app", "sha": sha}, "inputs": inputs}
}

// git runs git in dir.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// repoWith makes a repository with one commit of files and returns its path and sha.
func repoWith(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "init")
	return dir, git(t, dir, "rev-parse", "HEAD")
}

// childIDs lists the child executions of parent from the executions table.
func childIDs(t *testing.T, st *local.Stack, parent string) []string {
	t.Helper()
	rows, err := st.Meta.DB.Query(`SELECT id FROM executions WHERE parent_execution_id = ? ORDER BY id`, parent)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		ids = append(ids, id)
	}
	return ids
}

// A shard script: shard 2 fails; every shard records its index and total.
const shardScript = `#!/bin/sh
echo "shard $SHARD_INDEX of $SHARD_TOTAL" >> "$OUT/shards"
echo "running shard $SHARD_INDEX/$SHARD_TOTAL"
if [ "$SHARD_INDEX" = "2" ]; then echo "shard 2 broke" >&2; exit 4; fi
`

func TestMatrixFanoutRunsShardsAsChildrenWithCapOne(t *testing.T) {
	st := startStack(t, env{"ADMISSION_CAP": "1"})
	repo, sha := repoWith(t, map[string]string{"shard.sh": shardScript})
	out := t.TempDir()
	r := dispatch(t, st, "matrix-fanout", runBody("matrix-fanout", repo, sha, map[string]any{
		"repo": repo, "sha": sha, "command": "./shard.sh", "shards": 3, "env": map[string]string{"OUT": out},
	}), "")
	if r.status != http.StatusAccepted {
		t.Fatalf("dispatch: %d %s", r.status, r.raw)
	}
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 120*time.Second)

	// Red, with the table of shards.
	if v.Execution.Status != "failure" || v.Check.Conclusion != "failure" {
		t.Fatalf("status %s conclusion %s: %s", v.Execution.Status, v.Check.Conclusion, v.Check.Summary)
	}
	for _, want := range []string{"1 of 3 shard(s) failed", "| 1/3 | ✅ passed | 0 |", "| 2/3 | ❌ failed | 4 |", "| 3/3 | ✅ passed | 0 |", "/logs/"} {
		if !strings.Contains(v.Check.Summary, want) {
			t.Fatalf("summary lacks %q:\n%s", want, v.Check.Summary)
		}
	}
	// Three child executions linked to the parent, each with its own logs.
	kids := childIDs(t, st, id)
	if len(kids) != 3 || kids[0] != id+":shard-1" {
		t.Fatalf("children %v", kids)
	}
	for i, k := range kids {
		text := logsText(t, st, k)
		if want := fmt.Sprintf("running shard %d/3", i+1); !strings.Contains(text, want) {
			t.Fatalf("logs of %s lack %q:\n%s", k, want, text)
		}
		if ex := executionView(t, st, k).Execution; ex.Parent != id {
			t.Fatalf("%s parent %q", k, ex.Parent)
		}
	}
	b, _ := os.ReadFile(filepath.Join(out, "shards"))
	for i := 1; i <= 3; i++ {
		if !strings.Contains(string(b), fmt.Sprintf("shard %d of 3", i)) {
			t.Fatalf("shard %d did not run:\n%s", i, b)
		}
	}
	// The parent suspended while its shards ran (waiting shows in its steps: spawn, then results).
	names := []string{}
	for _, s := range v.Steps {
		names = append(names, s.Name+"="+s.Status)
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "shards-spawn=success") || !strings.Contains(got, "shards-results=success") {
		t.Fatalf("parent steps %s", got)
	}
}

func TestMatrixFanoutFailFastCancelsTheOtherShards(t *testing.T) {
	st := startStack(t, env{"ADMISSION_CAP": "4"})
	// Shard 1 fails at once; the others wait for a file that never comes.
	script := "#!/bin/sh\nif [ \"$SHARD_INDEX\" = 1 ]; then exit 2; fi\nsleep 60\n"
	repo, sha := repoWith(t, map[string]string{"shard.sh": script})
	r := dispatch(t, st, "matrix-fanout", runBody("matrix-fanout", repo, sha, map[string]any{
		"repo": repo, "sha": sha, "command": "./shard.sh", "shards": 3, "failureBehavior": "fail-fast",
	}), "")
	id := r.body["executionId"].(string)
	start := time.Now()
	v := waitDone(t, st, id, 60*time.Second)
	if took := time.Since(start); took > 45*time.Second {
		t.Fatalf("fail-fast took %s", took)
	}
	if v.Execution.Status != "failure" || !strings.Contains(v.Check.Summary, "⊘ cancelled") || !strings.Contains(v.Check.Summary, "(fail-fast)") {
		t.Fatalf("status %s summary:\n%s", v.Execution.Status, v.Check.Summary)
	}
	for _, k := range childIDs(t, st, id)[1:] {
		if s := executionView(t, st, k).Execution.Status; s != string(actors.StatusCancelled) {
			t.Fatalf("%s is %s, want cancelled", k, s)
		}
	}
}

func TestDeploySmokeProbesALocalServer(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/", "/api/status":
			w.Write([]byte("ok"))
		case "/moved":
			http.Redirect(w, r, "/", http.StatusFound)
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	defer app.Close()
	st := startStack(t, nil)
	body := runBody("deploy-smoke", "acme/web", "0123456789abcdef0123456789abcdef01234567", map[string]any{
		"repo": "acme/web", "baseURL": app.URL, "paths": []string{"/", "/health", "/api/status", "/moved"},
	})
	r := dispatch(t, st, "deploy-smoke", body, "smoke-1")
	v := waitDone(t, st, r.body["executionId"].(string), 60*time.Second)
	if v.Execution.Status != "failure" || v.Check.Conclusion != "failure" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	for _, want := range []string{"3/4 endpoints healthy", "| `/health` | 500 | ❌ unhealthy |", "| `/moved` | 302 | ✅ healthy |"} {
		if !strings.Contains(v.Check.Summary, want) {
			t.Fatalf("summary lacks %q:\n%s", want, v.Check.Summary)
		}
	}
	// reportOnly keeps it green with the same table.
	body["inputs"].(map[string]any)["reportOnly"] = true
	r = dispatch(t, st, "deploy-smoke", body, "smoke-2")
	v = waitDone(t, st, r.body["executionId"].(string), 60*time.Second)
	var out struct{ Checked, Failed int }
	json.Unmarshal(v.Summary, &out)
	if v.Execution.Status != "success" || out.Checked != 4 || out.Failed != 1 || !strings.Contains(v.Check.Summary, "3/4 endpoints healthy") {
		t.Fatalf("reportOnly: %s %+v\n%s", v.Execution.Status, out, v.Check.Summary)
	}
}

// fixturesRepo has fixtures to regenerate, one to delete, and a regenerate script that
// also writes outside the allowlist when asked to.
func fixturesRepo(t *testing.T) (string, string) {
	return repoWith(t, map[string]string{
		"fixtures/a.json":        `{"v":1}`,
		"fixtures/old.json":      `{"old":true}`,
		"src/app.txt":            "app",
		"ui/__fixtures__/x.snap": "snap 1",
		"regen.sh": `#!/bin/sh
set -e
echo '{"v":2}' > fixtures/a.json
rm fixtures/old.json
mkdir -p fixtures/new
echo 'fresh' > fixtures/new/b.json
echo 'snap 2' > ui/__fixtures__/x.snap
if [ -n "$ESCAPE" ]; then mkdir -p .github/workflows; echo 'on: push' > .github/workflows/evil.yml; echo x > src/app.txt; fi
`,
	})
}

func TestRefreshFixturesOpensAPullRequestWithExactlyTheChangedFiles(t *testing.T) {
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	repo, sha := fixturesRepo(t)
	gh.PushFiles("acme/app", "main", "init", map[string]string{"fixtures/a.json": `{"v":1}`, "fixtures/old.json": `{"old":true}`,
		"src/app.txt": "app", "ui/__fixtures__/x.snap": "snap 1"})
	st := startStack(t, env{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM), "GITHUB_API_URL": gh.URL()})
	body := map[string]any{"run": "refresh-fixtures", "github": map[string]any{"repo": "acme/app", "sha": sha, "installation_id": inst},
		"inputs": map[string]any{"repo": repo, "sha": sha, "command": "./regen.sh"}}
	r := dispatch(t, st, "refresh-fixtures", body, "")
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 90*time.Second)
	if v.Execution.Status != "success" || v.Check.Conclusion != "success" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	if !strings.Contains(v.Check.Summary, "writeback opened PR [#1](") || !strings.Contains(v.Check.Summary, "(3 file(s), 1 deletion(s))") {
		t.Fatalf("summary:\n%s", v.Check.Summary)
	}
	prs := gh.PullRequests("acme/app")
	if len(prs) != 1 || !prs[0].Draft || prs[0].Head != "flare-dispatch/refresh-fixtures" || prs[0].Title != "chore: refresh fixtures" {
		t.Fatalf("pull requests %+v", prs)
	}
	// The branch is main with exactly the changes: two rewritten, one new, one deleted.
	got := gh.Files("acme/app", "flare-dispatch/refresh-fixtures")
	want := gh.Files("acme/app", "main")
	want["fixtures/a.json"], want["fixtures/new/b.json"], want["ui/__fixtures__/x.snap"] = "{\"v\":2}\n", "fresh\n", "snap 2\n"
	delete(want, "fixtures/old.json")
	if len(got) != len(want) {
		t.Fatalf("branch files %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Fatalf("branch file %s = %q, want %q (all: %v)", k, got[k], w, got)
		}
	}
	var out struct {
		ChangedPaths []string `json:"changedPaths"`
	}
	json.Unmarshal(v.Summary, &out)
	if strings.Join(out.ChangedPaths, ",") != "fixtures/a.json,fixtures/new/b.json,fixtures/old.json,ui/__fixtures__/x.snap" {
		t.Fatalf("changedPaths %v", out.ChangedPaths)
	}
	// The staged artifact is browsable through the edge.
	if r := get(t, st.URL+"/v1/artifacts/"+id+"/writeback/manifest.json"); r.status != 200 || !strings.Contains(string(r.raw), "fixtures/old.json") {
		t.Fatalf("manifest artifact: %d %s", r.status, r.raw)
	}
}

func TestRefreshFixturesWritebackRejectionKeepsTheCheckGreen(t *testing.T) {
	gh, app := fakegithub.New(t)
	inst := gh.AddInstallation("acme/app")
	repo, sha := fixturesRepo(t)
	gh.PushFiles("acme/app", "main", "init", map[string]string{"fixtures/a.json": `{"v":1}`})
	st := startStack(t, env{"GITHUB_APP_ID": fmt.Sprint(app.ID), "GITHUB_APP_PRIVATE_KEY": string(app.PrivateKeyPEM), "GITHUB_API_URL": gh.URL()})
	body := map[string]any{"run": "refresh-fixtures", "github": map[string]any{"repo": "acme/app", "sha": sha, "installation_id": inst},
		"inputs": map[string]any{"repo": repo, "sha": sha, "command": "./regen.sh", "env": map[string]string{"ESCAPE": "1"}}}
	r := dispatch(t, st, "refresh-fixtures", body, "")
	v := waitDone(t, st, r.body["executionId"].(string), 90*time.Second)
	if v.Execution.Status != "success" || v.Check.Conclusion != "success" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	for _, want := range []string{"writeback rejected — ", "workflows: `.github/workflows/evil.yml`", "not-allowlisted: `src/app.txt`"} {
		if !strings.Contains(v.Check.Summary, want) {
			t.Fatalf("summary lacks %q:\n%s", want, v.Check.Summary)
		}
	}
	if prs := gh.PullRequests("acme/app"); len(prs) != 0 {
		t.Fatalf("a rejected writeback opened %+v", prs)
	}
	if b := gh.Branches("acme/app"); len(b) != 1 {
		t.Fatalf("branches %v", b)
	}
	_ = edge.CheckName
}

func TestSecretsNeverLeaveTheSandboxInTheClear(t *testing.T) {
	const secret = "s3cr3t-Value-9f8e7d"
	st := startStack(t, env{"ADMISSION_CAP": "2"})
	if err := st.Config.Put(t.Context(), "ci/TOKEN", secret, 0); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"token is $TOKEN\"\necho \"$TOKEN\" >&2\nmkdir -p fixtures && echo \"$TOKEN\" > fixtures/leak.json\nif [ \"$SHARD_INDEX\" = 2 ]; then echo \"failing with $TOKEN\" >&2; exit 1; fi\n"
	repo, sha := repoWith(t, map[string]string{"shard.sh": script})
	r := dispatch(t, st, "matrix-fanout", runBody("matrix-fanout", repo, sha, map[string]any{
		"repo": repo, "sha": sha, "command": "./shard.sh", "shards": 2, "secrets": []string{"TOKEN"}, "secretPrefix": "ci/",
	}), "")
	id := r.body["executionId"].(string)
	v := waitDone(t, st, id, 90*time.Second)
	if v.Execution.Status != "failure" {
		t.Fatalf("status %s: %s", v.Execution.Status, v.Check.Summary)
	}
	if !strings.Contains(logsText(t, st, id+":shard-1"), "token is ***") {
		t.Fatalf("the shard's log does not show the masked secret:\n%s", logsText(t, st, id+":shard-1"))
	}
	// Nowhere: not in the check, the outputs, the steps, the logs or any stored blob.
	var texts []string
	for _, x := range append([]string{id}, childIDs(t, st, id)...) {
		ev := executionView(t, st, x)
		b, _ := json.Marshal(ev)
		texts = append(texts, string(b), logsText(t, st, x))
	}
	rows, err := st.Meta.DB.Query(`SELECT COALESCE(summary_json,'') || input_json FROM executions`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		texts = append(texts, s)
	}
	rows.Close()
	filepath.WalkDir(filepath.Join(st.DataDir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			texts = append(texts, string(b))
		}
		return nil
	})
	for _, s := range texts {
		if strings.Contains(s, secret) {
			i := strings.Index(s, secret)
			t.Fatalf("the secret leaked: …%s…", s[max(0, i-200):min(len(s), i+50)])
		}
	}
}
