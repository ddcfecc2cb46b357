package fakegithub_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/internal/ci"
	"github.com/flare-dispatch/flare-dispatch/internal/fakegithub"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

const repo = "acme/widgets"

// api is a raw HTTP caller, so the tests can send what no client would.
type api struct {
	t    *testing.T
	f    *fakegithub.Fake
	auth string // Authorization header value
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return m
}

func (r response) message(t *testing.T) string {
	t.Helper()
	m, _ := r.json(t)["message"].(string)
	return m
}

func (a api) do(method, path string, body any) response {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, strings.TrimSuffix(a.f.URL(), "/")+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	req.Header.Set("User-Agent", "fake-test")
	if a.auth != "" {
		req.Header.Set("Authorization", a.auth)
	}
	resp, err := a.f.HTTPClient().Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: out}
}

func (a api) want(status int, method, path string, body any) response {
	a.t.Helper()
	r := a.do(method, path, body)
	if r.status != status {
		a.t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, status)
	}
	return r
}

func jwtFor(t *testing.T, key *rsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(header) + "." + enc(claims)
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func validClaims(app fakegithub.App) map[string]any {
	return map[string]any{"iat": t0.Add(-time.Minute).Unix(), "exp": t0.Add(9 * time.Minute).Unix(), "iss": app.ID}
}

type env struct {
	f    *fakegithub.Fake
	app  fakegithub.App
	inst int64
	jwt  api // authenticated as the App
	tok  api // authenticated as the installation
	head string
}

func setup(t *testing.T, repoOpts ...fakegithub.RepoOptions) *env {
	t.Helper()
	f, app := fakegithub.New(t)
	f.SetNow(t0)
	if len(repoOpts) > 0 {
		f.AddRepo(repo, repoOpts[0])
	}
	e := &env{f: f, app: app, inst: f.AddInstallation(repo), head: f.HeadSHA(repo, "main")}
	e.jwt = api{t: t, f: f, auth: "Bearer " + jwtFor(t, app.Key, map[string]any{"alg": "RS256", "typ": "JWT"}, validClaims(app))}
	r := e.jwt.want(201, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", e.inst), nil)
	e.tok = api{t: t, f: f, auth: "token " + r.json(t)["token"].(string)}
	return e
}

func TestJWTVerification(t *testing.T) {
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs256 := map[string]any{"alg": "RS256", "typ": "JWT"}
	cases := []struct {
		name   string
		mod    func(h, c map[string]any) *rsa.PrivateKey // returns the signing key, nil = the App's
		status int
		msg    string
	}{
		{"valid", func(h, c map[string]any) *rsa.PrivateKey { return nil }, 200, ""},
		{"iss as string", func(h, c map[string]any) *rsa.PrivateKey { c["iss"] = "1"; return nil }, 200, ""},
		{"iss as client id", func(h, c map[string]any) *rsa.PrivateKey { c["iss"] = "Iv1.fake000000000001"; return nil }, 200, ""},
		{"exactly ten minutes", func(h, c map[string]any) *rsa.PrivateKey {
			c["iat"], c["exp"] = t0.Unix(), t0.Add(10*time.Minute).Unix()
			return nil
		}, 200, ""},
		{"wrong key", func(h, c map[string]any) *rsa.PrivateKey { return other }, 401, "A JSON web token could not be decoded"},
		{"unknown app", func(h, c map[string]any) *rsa.PrivateKey { c["iss"] = 42; return nil }, 401, "A JSON web token could not be decoded"},
		{"alg HS256", func(h, c map[string]any) *rsa.PrivateKey { h["alg"] = "HS256"; return nil }, 401, "A JSON web token could not be decoded"},
		{"expired", func(h, c map[string]any) *rsa.PrivateKey {
			c["iat"], c["exp"] = t0.Add(-11*time.Minute).Unix(), t0.Add(-time.Minute).Unix()
			return nil
		}, 401, "'Expiration time' claim ('exp') must be a numeric value"},
		{"exp too far ahead", func(h, c map[string]any) *rsa.PrivateKey { c["exp"] = t0.Add(11 * time.Minute).Unix(); return nil }, 401, "too far in the future"},
		{"lifetime over ten minutes", func(h, c map[string]any) *rsa.PrivateKey {
			c["iat"], c["exp"] = t0.Add(-2*time.Minute).Unix(), t0.Add(9*time.Minute).Unix()
			return nil
		}, 401, "too far in the future"},
		{"iat in the future", func(h, c map[string]any) *rsa.PrivateKey { c["iat"] = t0.Add(time.Minute).Unix(); return nil }, 401, "'Issued at' claim"},
		{"iat not an integer", func(h, c map[string]any) *rsa.PrivateKey { c["iat"] = 1.5; return nil }, 401, "'Issued at' claim"},
		{"no exp", func(h, c map[string]any) *rsa.PrivateKey { delete(c, "exp"); return nil }, 401, "'Expiration time'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			h, c := map[string]any{}, validClaims(e.app)
			for k, v := range rs256 {
				h[k] = v
			}
			key := tc.mod(h, c)
			if key == nil {
				key = e.app.Key
			}
			a := api{t: t, f: e.f, auth: "Bearer " + jwtFor(t, key, h, c)}
			r := a.do("GET", "/app", nil)
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.status != 200 {
				m := r.json(t)
				if !strings.Contains(m["message"].(string), tc.msg) || m["documentation_url"] == "" {
					t.Fatalf("body = %s", r.body)
				}
			}
			if r.header.Get("X-RateLimit-Limit") == "" || r.header.Get("X-RateLimit-Reset") == "" {
				t.Fatalf("no rate-limit headers: %v", r.header)
			}
		})
	}
}

func TestInstallationTokens(t *testing.T) {
	e := setup(t)
	r := e.jwt.want(201, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", e.inst), nil)
	m := r.json(t)
	if tok := m["token"].(string); !strings.HasPrefix(tok, "ghs_") || len(tok) != 40 {
		t.Fatalf("token %q", tok)
	}
	if m["expires_at"] != t0.Add(time.Hour).Format(time.RFC3339) {
		t.Fatalf("expires_at %v", m["expires_at"])
	}
	e.tok.want(200, "GET", "/repos/acme/widgets", nil)
	// A token on an App endpoint, the JWT on a repository endpoint.
	e.tok.want(401, "GET", "/app", nil)
	e.jwt.want(403, "GET", "/repos/acme/widgets", nil)
	// Unknown installation, another App's installation, suspended.
	e.jwt.want(404, "POST", "/app/installations/999/access_tokens", nil)
	app2 := e.f.AddApp()
	inst2 := e.f.InstallApp(app2.ID, "acme/other")
	e.jwt.want(404, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", inst2), nil)
	e.f.SuspendInstallation(e.inst)
	e.jwt.want(403, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", e.inst), nil)
	// Expiry.
	e.f.Advance(59 * time.Minute)
	e.tok.want(200, "GET", "/repos/acme/widgets", nil)
	e.f.Advance(time.Minute)
	if r := e.tok.want(401, "GET", "/repos/acme/widgets", nil); r.message(t) != "Bad credentials" {
		t.Fatalf("body %s", r.body)
	}
	api{t: t, f: e.f, auth: "token ghs_nope"}.want(401, "GET", "/repos/acme/widgets", nil)
	api{t: t, f: e.f}.want(401, "GET", "/repos/acme/widgets", nil)
}

func TestRevokeTokens(t *testing.T) {
	e := setup(t)
	e.f.RevokeTokens(e.inst)
	e.tok.want(401, "GET", "/repos/acme/widgets", nil)
	if e.f.Tokens(e.inst) != 0 {
		t.Fatal("revoked tokens still counted")
	}
}

func TestRepositoryAccess(t *testing.T) {
	e := setup(t)
	e.f.AddRepo("acme/private", fakegithub.RepoOptions{})
	e.tok.want(404, "GET", "/repos/acme/private", nil)
	e.tok.want(404, "GET", "/repos/acme/missing", nil)
	e.jwt.want(404, "GET", "/repos/acme/private/installation", nil)
	r := e.jwt.want(200, "GET", "/repos/acme/widgets/installation", nil)
	if id := r.json(t)["id"].(float64); int64(id) != e.inst {
		t.Fatalf("installation %v", id)
	}
	r = e.tok.want(200, "GET", "/repos/ACME/Widgets", nil)
	if m := r.json(t); m["default_branch"] != "main" || m["full_name"] != "acme/widgets" || m["private"] != true {
		t.Fatalf("repo %s", r.body)
	}
	r = e.tok.want(200, "GET", "/installation/repositories", nil)
	if r.json(t)["total_count"].(float64) != 1 {
		t.Fatalf("repositories %s", r.body)
	}
	e.tok.want(404, "GET", "/repos/acme/widgets/nonsense", nil)

	req, _ := http.NewRequest("GET", e.f.URL()+"repos/acme/widgets", nil)
	req.Header.Set("Authorization", e.tok.auth)
	req.Header.Set("User-Agent", "")
	resp, err := e.f.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("no User-Agent: %d", resp.StatusCode)
	}
}

func TestPermissions(t *testing.T) {
	e := setup(t)
	e.f.SetPermissions(e.inst, map[string]string{"metadata": "read", "contents": "read"})
	e.tok.want(403, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "x", "head_sha": e.head})
	e.tok.want(403, "POST", "/repos/acme/widgets/git/blobs", map[string]any{"content": "x"})
	e.tok.want(200, "GET", "/repos/acme/widgets/git/ref/heads/main", nil)
	e.tok.want(403, "GET", "/repos/acme/widgets/pulls", nil)
}

func TestMalformedBodies(t *testing.T) {
	e := setup(t)
	if r := e.tok.want(400, "POST", "/repos/acme/widgets/check-runs", "{not json"); r.message(t) != "Problems parsing JSON" {
		t.Fatalf("body %s", r.body)
	}
	e.tok.want(422, "POST", "/repos/acme/widgets/check-runs", `{"name": 5, "head_sha": "x"}`)
}

func TestCheckRunCreateValidation(t *testing.T) {
	e := setup(t)
	base := func() map[string]any { return map[string]any{"name": "flare-dispatch/x", "head_sha": e.head} }
	with := func(kv ...any) map[string]any {
		m := base()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	annotations := func(n int) []any {
		var out []any
		for i := range n {
			out = append(out, map[string]any{"path": "a.go", "start_line": i + 1, "end_line": i + 1, "annotation_level": "warning", "message": "m"})
		}
		return out
	}
	output := func(summary string, ann []any) map[string]any {
		return map[string]any{"title": "t", "summary": summary, "annotations": ann}
	}
	cases := []struct {
		name   string
		body   map[string]any
		status int
	}{
		{"minimal", base(), 201},
		{"no name", with("name", nil), 422},
		{"empty name", with("name", ""), 422},
		{"no head_sha", with("head_sha", nil), 422},
		{"unknown head_sha", with("head_sha", strings.Repeat("a", 40)), 422},
		{"branch name as head_sha", with("head_sha", "main"), 422},
		{"in_progress", with("status", "in_progress"), 201},
		{"bad status", with("status", "running"), 422},
		{"actions-only status", with("status", "waiting"), 422},
		{"completed without conclusion", with("status", "completed"), 422},
		{"completed with conclusion", with("status", "completed", "conclusion", "success"), 201},
		{"conclusion alone completes", with("conclusion", "neutral"), 201},
		{"conclusion while in_progress", with("status", "in_progress", "conclusion", "success"), 422},
		{"bad conclusion", with("conclusion", "great"), 422},
		{"stale", with("conclusion", "stale"), 422},
		{"action_required without details_url", with("conclusion", "action_required"), 422},
		{"action_required with details_url", with("conclusion", "action_required", "details_url", "https://x.example/d"), 201},
		{"bad details_url", with("details_url", "not a url"), 422},
		{"completed_at without conclusion", with("completed_at", t0.Format(time.RFC3339)), 422},
		{"bad started_at", with("started_at", "yesterday"), 422},
		{"output without summary", with("output", map[string]any{"title": "t"}), 422},
		{"output without title", with("output", map[string]any{"summary": "s"}), 422},
		{"summary at the limit", with("output", output(strings.Repeat("é", 65535), nil)), 201},
		{"summary over the limit", with("output", output(strings.Repeat("a", 65536), nil)), 422},
		{"50 annotations", with("output", output("s", annotations(50))), 201},
		{"51 annotations", with("output", output("s", annotations(51))), 422},
		{"annotation bad level", with("output", output("s", []any{map[string]any{"path": "a", "start_line": 1, "end_line": 1, "annotation_level": "error", "message": "m"}})), 422},
		{"annotation no message", with("output", output("s", []any{map[string]any{"path": "a", "start_line": 1, "end_line": 1, "annotation_level": "notice"}})), 422},
		{"annotation columns across lines", with("output", output("s", []any{map[string]any{"path": "a", "start_line": 1, "end_line": 2, "start_column": 1, "end_column": 2, "annotation_level": "notice", "message": "m"}})), 422},
		{"annotation inverted range", with("output", output("s", []any{map[string]any{"path": "a", "start_line": 3, "end_line": 2, "annotation_level": "notice", "message": "m"}})), 422},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.tok.do("POST", "/repos/acme/widgets/check-runs", tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d %s, want %d", r.status, r.body, tc.status)
			}
			if r.status == 422 {
				if m := r.json(t); m["message"] == "" || m["documentation_url"] == "" {
					t.Fatalf("422 body %s", r.body)
				}
			}
		})
	}
}

func TestCheckRunUpdates(t *testing.T) {
	e := setup(t)
	r := e.tok.want(201, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": e.head, "status": "in_progress",
		"output": map[string]any{"title": "t", "summary": "started"}})
	id := int64(r.json(t)["id"].(float64))
	path := fmt.Sprintf("/repos/acme/widgets/check-runs/%d", id)
	ann := func(msg string) map[string]any {
		return map[string]any{"path": "a.go", "start_line": 1, "end_line": 1, "annotation_level": "notice", "message": msg}
	}
	e.tok.want(200, "PATCH", path, map[string]any{"output": map[string]any{"title": "t", "summary": "s1", "annotations": []any{ann("one")}}})
	e.tok.want(422, "PATCH", path, map[string]any{"status": "completed"})
	e.f.Advance(time.Minute)
	r = e.tok.want(200, "PATCH", path, map[string]any{"conclusion": "failure", "output": map[string]any{"title": "t", "summary": "s2", "annotations": []any{ann("two")}}})
	if m := r.json(t); m["status"] != "completed" || m["completed_at"] != t0.Add(time.Minute).Format(time.RFC3339) {
		t.Fatalf("completed %s", r.body)
	}
	cr, _ := e.f.CheckRun(repo, id)
	if len(cr.Annotations) != 2 || cr.Summary != "s2" || cr.Updates != 2 {
		t.Fatalf("run %+v", cr)
	}
	for _, back := range []string{"in_progress", "queued"} {
		if r := e.tok.do("PATCH", path, map[string]any{"status": back}); r.status != 422 {
			t.Fatalf("completed → %s: %d", back, r.status)
		}
	}
	e.tok.want(200, "PATCH", path, map[string]any{"output": map[string]any{"title": "t", "summary": "late annotations", "annotations": []any{ann("three")}}})
	e.tok.want(404, "PATCH", "/repos/acme/widgets/check-runs/424242", map[string]any{"status": "in_progress"})

	// Annotations paginate with a Link header.
	r = e.tok.want(200, "GET", path+"/annotations?per_page=2", nil)
	if !strings.Contains(r.header.Get("Link"), `rel="next"`) || !strings.Contains(r.header.Get("Link"), "page=2") {
		t.Fatalf("Link %q", r.header.Get("Link"))
	}
	r = e.tok.want(200, "GET", path+"/annotations?per_page=2&page=2", nil)
	var page []map[string]any
	_ = json.Unmarshal(r.body, &page)
	if len(page) != 1 || page[0]["message"] != "three" || !strings.Contains(r.header.Get("Link"), `rel="prev"`) {
		t.Fatalf("page 2 %s, Link %q", r.body, r.header.Get("Link"))
	}

	// A run of another repository is not found through this one.
	e.f.AddRepo("acme/other", fakegithub.RepoOptions{})
	e.f.SetPermissions(e.inst, fakegithub.DefaultPermissions)
	inst2 := e.f.AddInstallation("acme/other")
	tok2 := e.jwt.want(201, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", inst2), nil).json(t)["token"].(string)
	other := api{t: t, f: e.f, auth: "Bearer " + tok2}
	otherID := int64(other.want(201, "POST", "/repos/acme/other/check-runs", map[string]any{"name": "n", "head_sha": e.f.HeadSHA("acme/other", "main")}).json(t)["id"].(float64))
	e.tok.want(404, "PATCH", fmt.Sprintf("/repos/acme/widgets/check-runs/%d", otherID), map[string]any{"status": "in_progress"})

	// Listing by ref: latest per name by default, all on request.
	e.tok.want(201, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": e.head})
	r = e.tok.want(200, "GET", "/repos/acme/widgets/commits/main/check-runs", nil)
	if r.json(t)["total_count"].(float64) != 1 {
		t.Fatalf("latest %s", r.body)
	}
	r = e.tok.want(200, "GET", "/repos/acme/widgets/commits/"+e.head+"/check-runs?filter=all", nil)
	if r.json(t)["total_count"].(float64) != 2 {
		t.Fatalf("all %s", r.body)
	}
}

func TestCheckRunOfAnotherApp(t *testing.T) {
	e := setup(t)
	id := int64(e.tok.want(201, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": e.head}).json(t)["id"].(float64))
	app2 := e.f.AddApp()
	inst2 := e.f.InstallApp(app2.ID, repo)
	jwt2 := api{t: t, f: e.f, auth: "Bearer " + jwtFor(t, app2.Key, map[string]any{"alg": "RS256"}, validClaims(app2))}
	tok2 := jwt2.want(201, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", inst2), nil).json(t)["token"].(string)
	api{t: t, f: e.f, auth: "Bearer " + tok2}.want(403, "PATCH", fmt.Sprintf("/repos/acme/widgets/check-runs/%d", id), map[string]any{"status": "in_progress"})
}

func TestAddCommitSHA(t *testing.T) {
	e := setup(t)
	sha := "0123456789abcdef0123456789abcdef01234567"
	e.tok.want(422, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": sha})
	e.f.AddCommitSHA(repo, sha)
	e.tok.want(201, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": sha})
}

// git runs the real git in dir; the test is skipped without it.
func git(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestObjectIDsMatchGit(t *testing.T) {
	ci.Tool(t, "git")
	files := map[string]string{
		"README.md":         "# widgets\n",
		"src/main.go":       "package main\n",
		"src/lib/util.go":   "package lib\n",
		"src-extra.txt":     "sorts between src and src/",
		"docs/a b.md":       "spaces\n",
		"fixtures/data.bin": "\x00\x01\x02",
	}
	e := setup(t, fakegithub.RepoOptions{Files: files})

	dir := t.TempDir()
	git(t, dir, nil, "init", "-q")
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, nil, "add", "-A")
	wantTree := git(t, dir, nil, "write-tree")

	c, _ := e.f.CommitOf(repo, e.head)
	if c.Tree != wantTree {
		t.Fatalf("tree %s, git says %s", c.Tree, wantTree)
	}
	r := e.tok.want(201, "POST", "/repos/acme/widgets/git/blobs", map[string]any{"content": "hello\n"})
	if sha := r.json(t)["sha"]; sha != "ce013625030ba8dba906f756967f9e9ca394464a" {
		t.Fatalf("blob sha %v", sha)
	}
	// The fake's initial commit, rebuilt by git from the same tree, author
	// and message (given on stdin, so git adds no newline).
	who := func(name, email, date string) []string {
		return []string{"GIT_AUTHOR_NAME=" + name, "GIT_AUTHOR_EMAIL=" + email, "GIT_AUTHOR_DATE=" + date,
			"GIT_COMMITTER_NAME=" + name, "GIT_COMMITTER_EMAIL=" + email, "GIT_COMMITTER_DATE=" + date}
	}
	cmd := exec.Command("git", "commit-tree", wantTree)
	cmd.Dir, cmd.Stdin = dir, strings.NewReader("Initial commit")
	cmd.Env = append(os.Environ(), who("Test User", "test@example.com", t0.Format(time.RFC3339))...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if parent := strings.TrimSpace(string(out)); parent != e.head {
		t.Fatalf("initial commit %s, git says %s", e.head, parent)
	}
	date := "2026-05-01T12:30:00Z"
	r = e.tok.want(201, "POST", "/repos/acme/widgets/git/commits", map[string]any{
		"message": "msg\n", "tree": wantTree, "parents": []string{e.head},
		"author":    map[string]any{"name": "A U Thor", "email": "a@example.com", "date": date},
		"committer": map[string]any{"name": "A U Thor", "email": "a@example.com", "date": date},
	})
	want := git(t, dir, who("A U Thor", "a@example.com", date), "commit-tree", wantTree, "-p", e.head, "-m", "msg")
	if got := r.json(t)["sha"].(string); got != want {
		t.Fatalf("commit %s, git says %s", got, want)
	}
}

func TestTreeEdits(t *testing.T) {
	e := setup(t, fakegithub.RepoOptions{Files: map[string]string{"a.txt": "a", "dir/b.txt": "b", "dir/sub/c.txt": "c"}})
	c, _ := e.f.CommitOf(repo, e.head)
	blob := e.tok.want(201, "POST", "/repos/acme/widgets/git/blobs", map[string]any{"content": "bmV3", "encoding": "base64"}).json(t)["sha"].(string)
	tree := func(entries ...map[string]any) response {
		return e.tok.do("POST", "/repos/acme/widgets/git/trees", map[string]any{"base_tree": c.Tree, "tree": entries})
	}
	entry := func(path string, kv ...any) map[string]any {
		m := map[string]any{"path": path, "mode": "100644", "type": "blob"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		name    string
		entries []map[string]any
		status  int
		msg     string
	}{
		{"write by sha", []map[string]any{entry("new.txt", "sha", blob)}, 201, ""},
		{"write inline content", []map[string]any{entry("dir/inline.txt", "content", "inline")}, 201, ""},
		{"delete", []map[string]any{entry("dir/sub/c.txt", "sha", nil)}, 201, ""},
		{"delete a missing path", []map[string]any{entry("nope.txt", "sha", nil)}, 422, "GitRPC::BadObjectState"},
		{"sha and content", []map[string]any{entry("x", "sha", blob, "content", "y")}, 422, "Must supply either"},
		{"neither sha nor content", []map[string]any{entry("x")}, 422, "Must supply either"},
		{"unknown blob", []map[string]any{entry("x", "sha", strings.Repeat("b", 40))}, 422, "not a valid blob"},
		{"dot-dot path", []map[string]any{entry("../x", "content", "y")}, 422, "malformed path"},
		{"absolute path", []map[string]any{entry("/x", "content", "y")}, 422, "malformed path"},
		{"empty segment", []map[string]any{entry("a//x", "content", "y")}, 422, "malformed path"},
		{"bad mode", []map[string]any{entry("x", "mode", "100600", "content", "y")}, 422, "tree.mode"},
		{"file under a file", []map[string]any{entry("a.txt/x", "content", "y")}, 422, "BadObjectState"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tree(tc.entries...)
			if r.status != tc.status || (tc.msg != "" && !strings.Contains(r.message(t), tc.msg)) {
				t.Fatalf("%d %s, want %d %q", r.status, r.body, tc.status, tc.msg)
			}
		})
	}
	// Apply one edit set and read the files back through a branch.
	r := tree(entry("new.txt", "sha", blob), entry("dir/sub/c.txt", "sha", nil), entry("dir/b.txt", "content", "B"))
	newTree := r.json(t)["sha"].(string)
	commit := e.tok.want(201, "POST", "/repos/acme/widgets/git/commits", map[string]any{"message": "m", "tree": newTree, "parents": []string{e.head}}).json(t)["sha"].(string)
	e.tok.want(201, "POST", "/repos/acme/widgets/git/refs", map[string]any{"ref": "refs/heads/edit", "sha": commit})
	got := e.f.Files(repo, "edit")
	if fmt.Sprint(got) != fmt.Sprint(map[string]string{"a.txt": "a", "dir/b.txt": "B", "new.txt": "new"}) {
		t.Fatalf("files %v", got)
	}
	r = e.tok.want(200, "GET", "/repos/acme/widgets/git/trees/"+newTree+"?recursive=1", nil)
	var listing struct {
		Tree []struct{ Path, Type string }
	}
	_ = json.Unmarshal(r.body, &listing)
	var paths []string
	for _, en := range listing.Tree {
		paths = append(paths, en.Type+":"+en.Path)
	}
	if strings.Join(paths, " ") != "blob:a.txt tree:dir blob:dir/b.txt blob:new.txt" {
		t.Fatalf("recursive listing %v", paths)
	}
	r = e.tok.want(200, "GET", "/repos/acme/widgets/git/blobs/"+blob, nil)
	if m := r.json(t); m["encoding"] != "base64" || m["size"].(float64) != 3 {
		t.Fatalf("blob %s", r.body)
	}
	e.tok.want(422, "POST", "/repos/acme/widgets/git/commits", map[string]any{"message": "m", "tree": strings.Repeat("c", 40)})
	e.tok.want(422, "POST", "/repos/acme/widgets/git/commits", map[string]any{"message": "m", "tree": newTree, "parents": []string{strings.Repeat("c", 40)}})
	e.tok.want(422, "POST", "/repos/acme/widgets/git/commits", map[string]any{"tree": newTree})
	e.tok.want(422, "POST", "/repos/acme/widgets/git/blobs", map[string]any{"content": "x", "encoding": "latin1"})
}

func TestRefs(t *testing.T) {
	e := setup(t)
	side := e.f.PushFiles(repo, "side", "side work", map[string]string{"s.txt": "s"})
	ahead := e.f.PushFiles(repo, "ahead", "ahead", map[string]string{"x.txt": "x"})
	e.tok.want(201, "POST", "/repos/acme/widgets/git/refs", map[string]any{"ref": "refs/heads/feature/x", "sha": e.head})
	if r := e.tok.want(422, "POST", "/repos/acme/widgets/git/refs", map[string]any{"ref": "refs/heads/feature/x", "sha": e.head}); r.message(t) != "Reference already exists" {
		t.Fatalf("%s", r.body)
	}
	for _, bad := range []string{"heads/x", "refs/x", "refs/heads/a..b", "refs/heads/x.lock", "refs/heads/sp ace"} {
		e.tok.want(422, "POST", "/repos/acme/widgets/git/refs", map[string]any{"ref": bad, "sha": e.head})
	}
	e.tok.want(422, "POST", "/repos/acme/widgets/git/refs", map[string]any{"ref": "refs/heads/y", "sha": strings.Repeat("d", 40)})
	e.tok.want(200, "GET", "/repos/acme/widgets/git/ref/heads/feature/x", nil)
	e.tok.want(404, "GET", "/repos/acme/widgets/git/ref/heads/feature/none", nil)
	// Fast-forward only unless forced.
	e.tok.want(200, "PATCH", "/repos/acme/widgets/git/refs/heads/feature/x", map[string]any{"sha": ahead})
	if r := e.tok.want(422, "PATCH", "/repos/acme/widgets/git/refs/heads/feature/x", map[string]any{"sha": side}); r.message(t) != "Update is not a fast forward" {
		t.Fatalf("%s", r.body)
	}
	e.tok.want(200, "PATCH", "/repos/acme/widgets/git/refs/heads/feature/x", map[string]any{"sha": side, "force": true})
	if e.f.HeadSHA(repo, "feature/x") != side {
		t.Fatal("force update lost")
	}
	e.tok.want(422, "PATCH", "/repos/acme/widgets/git/refs/heads/nope", map[string]any{"sha": side, "force": true})
	r := e.tok.want(200, "GET", "/repos/acme/widgets/git/matching-refs/heads/feature", nil)
	if !strings.Contains(string(r.body), "refs/heads/feature/x") {
		t.Fatalf("matching %s", r.body)
	}
	e.tok.want(422, "DELETE", "/repos/acme/widgets/git/refs/heads/main", nil)
	e.tok.want(204, "DELETE", "/repos/acme/widgets/git/refs/heads/feature/x", nil)
	e.tok.want(422, "DELETE", "/repos/acme/widgets/git/refs/heads/feature/x", nil)
	if fmt.Sprint(e.f.Branches(repo)) != "[ahead main side]" {
		t.Fatalf("branches %v", e.f.Branches(repo))
	}
}

func TestPullRequests(t *testing.T) {
	e := setup(t)
	e.f.PushFiles(repo, "feature", "work", map[string]string{"f.txt": "f"})
	e.f.PushFiles(repo, "other", "more", map[string]string{"o.txt": "o"})
	e.tok.want(201, "POST", "/repos/acme/widgets/git/refs", map[string]any{"ref": "refs/heads/same", "sha": e.head})
	pr := func(kv ...any) map[string]any {
		m := map[string]any{"title": "T", "head": "feature", "base": "main", "draft": true}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	for name, body := range map[string]map[string]any{
		"no title":         pr("title", nil),
		"no head":          pr("head", nil),
		"unknown head":     pr("head", "ghost"),
		"unknown base":     pr("base", "ghost"),
		"fork head":        pr("head", "someone:feature"),
		"head equals base": pr("head", "main"),
		"no commits":       pr("head", "same"),
	} {
		if r := e.tok.do("POST", "/repos/acme/widgets/pulls", body); r.status != 422 {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	r := e.tok.want(201, "POST", "/repos/acme/widgets/pulls", pr("head", "acme:feature"))
	if m := r.json(t); m["number"].(float64) != 1 || m["draft"] != true || m["head"].(map[string]any)["sha"] != e.f.HeadSHA(repo, "feature") {
		t.Fatalf("pr %s", r.body)
	}
	if r := e.tok.want(422, "POST", "/repos/acme/widgets/pulls", pr()); !strings.Contains(string(r.body), "A pull request already exists for acme:feature.") {
		t.Fatalf("duplicate %s", r.body)
	}
	e.tok.want(201, "POST", "/repos/acme/widgets/pulls", pr("head", "other", "title", "Other"))

	list := func(query string) int {
		var out []any
		_ = json.Unmarshal(e.tok.want(200, "GET", "/repos/acme/widgets/pulls"+query, nil).body, &out)
		return len(out)
	}
	if n := list("?head=acme:feature"); n != 1 {
		t.Errorf("head filter: %d", n)
	}
	if n := list("?head=feature"); n != 2 {
		t.Errorf("head without owner is ignored by GitHub: got %d, want 2", n)
	}
	if n := list("?head=acme:ghost"); n != 0 {
		t.Errorf("unknown head: %d", n)
	}
	r = e.tok.want(200, "GET", "/repos/acme/widgets/pulls?per_page=1", nil)
	if link := r.header.Get("Link"); !strings.Contains(link, `page=2>; rel="next"`) || !strings.Contains(link, `rel="last"`) {
		t.Fatalf("Link %q", link)
	}
	e.tok.want(200, "PATCH", "/repos/acme/widgets/pulls/1", map[string]any{"title": "T2", "body": "B2"})
	e.tok.want(422, "PATCH", "/repos/acme/widgets/pulls/1", map[string]any{"state": "merged"})
	e.tok.want(404, "PATCH", "/repos/acme/widgets/pulls/9", map[string]any{"title": "x"})
	e.tok.want(204, "DELETE", "/repos/acme/widgets/git/refs/heads/feature", nil)
	prs := e.f.PullRequests(repo)
	if prs[0].Title != "T2" || prs[0].Body != "B2" || prs[0].State != "closed" || prs[1].State != "open" {
		t.Fatalf("pulls %+v", prs)
	}
	if n := list("?state=closed"); n != 1 {
		t.Errorf("closed: %d", n)
	}
	e.tok.want(422, "GET", "/repos/acme/widgets/pulls?state=merged", nil)
}

func TestReviews(t *testing.T) {
	e := setup(t)
	e.f.PushFiles(repo, "feature", "work", map[string]string{"f.txt": "f"})
	e.tok.want(201, "POST", "/repos/acme/widgets/pulls", map[string]any{"title": "T", "head": "feature", "base": "main"})
	e.tok.want(422, "POST", "/repos/acme/widgets/pulls/1/reviews", map[string]any{"event": "COMMENT"})
	e.tok.want(422, "POST", "/repos/acme/widgets/pulls/1/reviews", map[string]any{"event": "LGTM", "body": "x"})
	e.tok.want(404, "POST", "/repos/acme/widgets/pulls/2/reviews", map[string]any{"event": "COMMENT", "body": "x"})
	r := e.tok.want(200, "POST", "/repos/acme/widgets/pulls/1/reviews", map[string]any{"event": "COMMENT", "body": "looks fine",
		"comments": []any{map[string]any{"path": "f.txt", "line": 1, "body": "nit"}}})
	if m := r.json(t); m["state"] != "COMMENTED" || m["commit_id"] != e.f.HeadSHA(repo, "feature") {
		t.Fatalf("review %s", r.body)
	}
	if rv := e.f.Reviews(repo, 1); len(rv) != 1 || len(rv[0].Comments) != 1 || rv[0].Body != "looks fine" {
		t.Fatalf("reviews %+v", rv)
	}
	e.tok.want(200, "GET", "/repos/acme/widgets/pulls/1/reviews", nil)
}

func TestFaults(t *testing.T) {
	e := setup(t)
	e.f.FailNext(2, "GET /repos/acme/widgets", fakegithub.TooManyRequests(time.Second))
	e.f.FailNext(1, "/repos/acme/widgets/git/**", fakegithub.ServerError(502))
	e.f.FailNext(1, "POST /repos/acme/widgets/check-runs", fakegithub.SecondaryRateLimit(2*time.Second))
	e.f.FailNext(1, "PATCH /repos/acme/widgets/check-runs/*", fakegithub.PrimaryRateLimit(time.Minute))
	e.f.FailNext(1, "/app/installations/*/access_tokens", fakegithub.BadCredentials())

	for range 2 {
		r := e.tok.want(429, "GET", "/repos/acme/widgets", nil)
		if r.header.Get("Retry-After") != "1" || r.header.Get("X-RateLimit-Remaining") == "" {
			t.Fatalf("headers %v", r.header)
		}
	}
	e.tok.want(200, "GET", "/repos/acme/widgets", nil)
	e.tok.want(502, "GET", "/repos/acme/widgets/git/ref/heads/main", nil)
	e.tok.want(200, "GET", "/repos/acme/widgets/git/ref/heads/main", nil)
	r := e.tok.want(403, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": e.head})
	if !strings.Contains(r.message(t), "secondary rate limit") || r.header.Get("Retry-After") != "2" ||
		!strings.HasSuffix(r.json(t)["documentation_url"].(string), "secondary-rate-limits") {
		t.Fatalf("secondary %v %s", r.header, r.body)
	}
	if len(e.f.CheckRuns(repo)) != 0 {
		t.Fatal("a faulted request took effect")
	}
	id := int64(e.tok.want(201, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": e.head}).json(t)["id"].(float64))
	r = e.tok.want(403, "PATCH", fmt.Sprintf("/repos/acme/widgets/check-runs/%d", id), map[string]any{"status": "in_progress"})
	if r.header.Get("X-RateLimit-Remaining") != "0" || r.header.Get("X-RateLimit-Reset") != fmt.Sprint(t0.Add(time.Minute).Unix()) {
		t.Fatalf("primary %v", r.header)
	}
	e.jwt.want(401, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", e.inst), nil)
	e.jwt.want(201, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", e.inst), nil)

	calls := e.f.CallsTo("GET /repos/acme/widgets")
	if len(calls) != 3 || calls[0].Status != 429 || calls[2].Status != 200 || calls[2].Installation != e.inst {
		t.Fatalf("calls %+v", calls)
	}
}

func TestPrimaryRateLimit(t *testing.T) {
	e := setup(t)
	e.f.SetRateLimit(3) // the token mint in setup used the App's budget, not the installation's
	e.tok.want(200, "GET", "/repos/acme/widgets", nil)
	e.tok.want(200, "GET", "/repos/acme/widgets", nil)
	r := e.tok.want(200, "GET", "/repos/acme/widgets", nil)
	if r.header.Get("X-RateLimit-Remaining") != "0" || r.header.Get("X-RateLimit-Used") != "3" {
		t.Fatalf("headers %v", r.header)
	}
	r = e.tok.want(403, "GET", "/repos/acme/widgets", nil)
	if !strings.Contains(r.message(t), "API rate limit exceeded for installation ID") || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("%v %s", r.header, r.body)
	}
	e.f.Advance(time.Hour) // a new window, and a new token (the old one expired with it)
	now := e.f.Now()
	jwt := api{t: t, f: e.f, auth: "Bearer " + jwtFor(t, e.app.Key, map[string]any{"alg": "RS256"},
		map[string]any{"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix(), "iss": e.app.ID})}
	tok := jwt.want(201, "POST", fmt.Sprintf("/app/installations/%d/access_tokens", e.inst), nil).json(t)["token"].(string)
	r = api{t: t, f: e.f, auth: "Bearer " + tok}.want(200, "GET", "/repos/acme/widgets", nil)
	if r.header.Get("X-RateLimit-Remaining") != "2" {
		t.Fatalf("after reset: %v", r.header)
	}
}

func TestUnknownRouteIsGitHubNotFound(t *testing.T) {
	e := setup(t)
	r := e.tok.want(404, "GET", "/nope", nil)
	if m := r.json(t); m["message"] != "Not Found" || m["documentation_url"] == nil {
		t.Fatalf("%s", r.body)
	}
	e.tok.want(404, "PUT", "/repos/acme/widgets", nil)
}

func TestCallsAreRecorded(t *testing.T) {
	e := setup(t)
	e.f.ResetCalls()
	e.tok.want(201, "POST", "/repos/acme/widgets/check-runs", map[string]any{"name": "n", "head_sha": e.head})
	calls := e.f.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls %+v", calls)
	}
	c := calls[0]
	if c.Method != "POST" || c.Path != "/repos/acme/widgets/check-runs" || c.Installation != e.inst || c.App != 0 ||
		c.Status != 201 || !c.Time.Equal(t0) || !strings.Contains(string(c.Body), `"name":"n"`) {
		t.Fatalf("call %+v", c)
	}
}
