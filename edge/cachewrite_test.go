package edge_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
)

// startsRecorder is edge.Sandboxes keeping the Starts it was handed.
type startsRecorder struct {
	mu     sync.Mutex
	starts map[string]agentapi.Start
}

func (r *startsRecorder) Start(_ context.Context, _, _ string, s agentapi.Start) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts[s.Exec] = s
	return nil
}

func (r *startsRecorder) Stop(context.Context, string, agentapi.Cancel) error { return nil }

// defaultBranchGitHub answers Repository with a default branch, or fails.
type defaultBranchGitHub struct {
	recordingGitHub
	branch string
	fail   bool
	calls  int
}

func (g *defaultBranchGitHub) Repository(context.Context, int64, string) (edge.RepositoryInfo, error) {
	g.calls++
	if g.fail {
		return edge.RepositoryInfo{}, errors.New("github: 502 bad gateway")
	}
	return edge.RepositoryInfo{FullName: "acme/app", DefaultBranch: g.branch}, nil
}

// TestCacheCredentialIsWritableOnlyOnTheDefaultBranch pins where a sandbox may write its
// repository's cache: the scoped blob credential itself (the agent runs hostile code, so
// a flag the agent obeys would be no guard). A pull request reads; so does a push to
// another branch of an App-installed repository, and any execution whose default branch
// could not be looked up. Without the branch comparison in CacheWritable the
// "feature branch" case fails; without the PRNumber check the "pull request" one.
func TestCacheCredentialIsWritableOnlyOnTheDefaultBranch(t *testing.T) {
	cfg := edge.Config{HMACSecret: "test-secret-0123456789"}
	for _, c := range []struct {
		name  string
		p     edge.Params
		gh    *defaultBranchGitHub
		write bool
	}{
		{"default branch", edge.Params{Ref: "refs/heads/main", InstallationID: 5}, &defaultBranchGitHub{branch: "main"}, true},
		{"default branch, short ref", edge.Params{Ref: "main", InstallationID: 5}, &defaultBranchGitHub{branch: "main"}, true},
		{"feature branch", edge.Params{Ref: "refs/heads/topic", InstallationID: 5}, &defaultBranchGitHub{branch: "main"}, false},
		{"pull request", edge.Params{Ref: "refs/pull/7/merge", PRNumber: 7, InstallationID: 5}, &defaultBranchGitHub{branch: "main"}, false},
		{"pull request, no app", edge.Params{Ref: "refs/heads/main", PRNumber: 7}, nil, false},
		{"lookup failed", edge.Params{Ref: "refs/heads/main", InstallationID: 5}, &defaultBranchGitHub{fail: true}, false},
		{"no app installation", edge.Params{Ref: "refs/heads/topic"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			meta, sb := newMeta(), &startsRecorder{starts: map[string]agentapi.Start{}}
			deps := edge.Deps{Config: cfg, Runs: dsl.NewRegistry(writebackRun), Meta: meta, KV: newKV(), Actors: newActors(), Sandboxes: sb}
			if c.gh != nil {
				deps.GitHub = c.gh
			}
			s := edge.New(deps)
			p := c.p
			p.Exec, p.Run, p.Repo, p.SHA = "ex1", "refresh-fixtures", "acme/app", "0123456789abcdef0123456789abcdef01234567"
			in, _ := json.Marshal(p)
			if _, err := meta.CreateExecution(context.Background(), edge.Execution{ID: "ex1", Run: p.Run, Repo: p.Repo, Input: in}); err != nil {
				t.Fatal(err)
			}
			s.Perform(context.Background(), actors.RunAddr("ex1"), actors.StartAgent{Exec: "ex1", Attempt: 1, Pool: "default", Sandbox: "sb"})
			st, ok := sb.starts["ex1"]
			if !ok {
				t.Fatal("no Start reached the sandbox")
			}
			claims, _, err := blobcred.Verify(edge.BlobRoot(cfg), st.Blobs.AccessKeyID, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if got := claims.Allows("cache/acme/app/tc-go-x.tar.zst", blobcred.Write); got != c.write || st.Blobs.CacheWrite != c.write {
				t.Fatalf("credential allows cache write = %v, Start.CacheWrite = %v; want %v", got, st.Blobs.CacheWrite, c.write)
			}
			if !claims.Allows("cache/acme/app/tc-go-x.tar.zst", blobcred.Read) {
				t.Fatal("every execution may read its repository's cache")
			}
		})
	}
}

// TestDefaultBranchIsLookedUpOncePerWhile: a second agent start of the repository takes
// the default branch from the KV instead of spending another GitHub call (fails
// without the KV entry in cacheWritable: two calls).
func TestDefaultBranchIsLookedUpOncePerWhile(t *testing.T) {
	cfg := edge.Config{HMACSecret: "test-secret-0123456789"}
	meta, sb, gh := newMeta(), &startsRecorder{starts: map[string]agentapi.Start{}}, &defaultBranchGitHub{branch: "main"}
	s := edge.New(edge.Deps{Config: cfg, Runs: dsl.NewRegistry(writebackRun), Meta: meta, KV: newKV(), Actors: newActors(), Sandboxes: sb, GitHub: gh})
	for _, id := range []string{"ex1", "ex2"} {
		p := edge.Params{Exec: id, Run: "refresh-fixtures", Repo: "acme/app", Ref: "refs/heads/main", InstallationID: 5, SHA: "0123456789abcdef0123456789abcdef01234567"}
		in, _ := json.Marshal(p)
		meta.CreateExecution(context.Background(), edge.Execution{ID: id, Run: p.Run, Repo: p.Repo, Input: in})
		s.Perform(context.Background(), actors.RunAddr(id), actors.StartAgent{Exec: id, Attempt: 1, Pool: "default", Sandbox: "sb-" + id})
		if !sb.starts[id].Blobs.CacheWrite {
			t.Fatalf("%s: the default branch's run may not write its cache", id)
		}
	}
	if gh.calls != 1 {
		t.Fatalf("%d GitHub repository lookups for two starts, want 1", gh.calls)
	}
}
