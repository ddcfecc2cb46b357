package browserruns_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/agent/artifacts"
	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/agent/browser"
	"github.com/flare-dispatch/flare-dispatch/agent/cache"
	"github.com/flare-dispatch/flare-dispatch/agent/sandbox"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/dsl/dsltest"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobs"
	"github.com/flare-dispatch/flare-dispatch/internal/browserruns"
	"github.com/flare-dispatch/flare-dispatch/internal/chromiumtest"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/internal/s3test"
)

// world is what one test's executions share: the blob store, the edge serving its
// artifacts, and chromium.
type world struct {
	t      testing.TB
	store  *s3test.Store
	origin string // the edge
	bin    string
}

func newWorld(t testing.TB) *world {
	t.Helper()
	bin := chromiumtest.Bin(t)
	store := s3test.Start(t)
	id, secret := store.AdminCredential()
	bl, err := blobs.New(store.URL, store.Bucket, id, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(edge.New(edge.Deps{Blobs: bl}))
	t.Cleanup(srv.Close)
	return &world{t: t, store: store, origin: srv.URL, bin: bin}
}

// execution is one execution's capabilities, as the agent builds them.
type execution struct {
	c       *dsl.Ctx
	journal *dsltest.Journal
	browser *browser.Browser
}

func (w *world) execution(ctx context.Context, exec, run, repo string) *execution {
	t := w.t
	t.Helper()
	id, secret := w.store.CredentialWith(t, exec, repo, true)
	store, err := blobstore.New(blobstore.Config{Endpoint: w.store.URL, Bucket: w.store.Bucket, AccessKeyID: id, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.New(sandbox.Config{Workspace: t.TempDir(), Local: true, LogPrefix: "logs/" + exec + "/"})
	if err != nil {
		t.Fatal(err)
	}
	br := browser.New(browser.Config{Bin: w.bin, TempDir: t.TempDir()})
	t.Cleanup(func() { br.Close() })
	j := dsltest.NewJournal()
	c := &dsl.Ctx{Context: ctx, Exec: exec, Attempt: 1, Run: run, Journal: j, Sandbox: sb, Local: true,
		Cache:     &cache.Cache{Store: store, Prefix: "cache/" + repo + "/", Writable: true},
		Artifacts: &artifacts.Artifacts{Store: store, Exec: exec, Origin: w.origin},
		Browser:   br,
	}
	return &execution{c: c, journal: j, browser: br}
}

// fixtureRepo makes a git repository of the fixture directories given (merged).
func fixtureRepo(t testing.TB, dirs ...string) (string, string) {
	t.Helper()
	return gittest.RepoWith(t, browserruns.Files(t, dirs...))
}

func startApp(t testing.TB, dir string) string { return browserruns.StartApp(t, dir) }

// fetch GETs a URL and returns status and body.
func fetch(t testing.TB, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func decode[T any](t testing.TB, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	return v
}

func needNode(t testing.TB) { browserruns.NeedNode(t) }
