package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/artifacts"
	"github.com/flare-dispatch/flare-dispatch/agent/blobstore"
	"github.com/flare-dispatch/flare-dispatch/agent/cache"
	"github.com/flare-dispatch/flare-dispatch/agent/redact"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// The capabilities the edge brokers, over the agent API. What they send to the edge
// passes through the redactor, like the journal.

// edgeConfig is dsl.ConfigStore.
type edgeConfig struct{ client *agentapi.Client }

func (c edgeConfig) Get(ctx context.Context, keys []string) (map[string]string, error) {
	v, err := c.client.Config(ctx, keys)
	return v.Values, err
}

// edgeGitHub is dsl.GitHubAPI; GitHub's refusals come back as *dsl.GitHubApiError.
type edgeGitHub struct {
	client *agentapi.Client
	red    *redact.Redactor
}

func githubErr(err error) error {
	if g, ok := agentapi.AsGitHubError(err); ok {
		return &dsl.GitHubApiError{Status: g.Status, Reason: g.Reason, RetryAfterMs: g.RetryAfterMs}
	}
	return err
}

func (g edgeGitHub) Repository(ctx context.Context, repo string) (dsl.Repository, error) {
	r, err := g.client.Repository(ctx, repo)
	if err != nil {
		return dsl.Repository{}, githubErr(err)
	}
	return r, nil
}

func (g edgeGitHub) OpenPullRequests(ctx context.Context, repo string) ([]dsl.PullRequest, error) {
	prs, err := g.client.OpenPullRequests(ctx, repo)
	if err != nil {
		return nil, githubErr(err)
	}
	return prs.Pulls, nil
}

// OpenDraftPullRequest sends pr with every secret the run loaded masked (in a copy: the
// run's own value stays as it was).
func (g edgeGitHub) OpenDraftPullRequest(ctx context.Context, pr dsl.DraftPullRequest) (dsl.PullRequestResult, error) {
	pr.Title, pr.Body, pr.CommitMessage = g.red.String(pr.Title), g.red.String(pr.Body), g.red.String(pr.CommitMessage)
	files := make([]dsl.FileChange, len(pr.Files))
	for i, f := range pr.Files {
		f.Content = g.red.String(f.Content)
		files[i] = f
	}
	pr.Files = files
	r, err := g.client.OpenDraftPullRequest(ctx, pr)
	if err != nil {
		return dsl.PullRequestResult{}, githubErr(err)
	}
	return r, nil
}

// edgeChildren is dsl.Children.
type edgeChildren struct {
	client *agentapi.Client
	red    *redact.Redactor
}

func (c edgeChildren) Spawn(ctx context.Context, failFast bool, children []dsl.ChildSpec) ([]string, error) {
	req := agentapi.SpawnChildren{FailFast: failFast}
	for _, ch := range children {
		raw, ok := ch.Inputs.(json.RawMessage)
		if !ok {
			b, err := json.Marshal(ch.Inputs)
			if err != nil {
				return nil, &dsl.StepFailed{Cause: fmt.Sprintf("child %s: inputs do not encode: %v", ch.Key, err)}
			}
			raw = b
		}
		req.Children = append(req.Children, agentapi.ChildStart{Key: ch.Key, Run: ch.Run, Inputs: c.red.JSON(raw)})
	}
	out, err := c.client.SpawnChildren(ctx, req)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(out.Children))
	for _, sc := range out.Children {
		ids = append(ids, sc.Exec)
	}
	return ids, nil
}

func (c edgeChildren) Results(ctx context.Context) ([]dsl.ChildResult, error) {
	st, err := c.client.ChildrenStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]dsl.ChildResult, 0, len(st.Children))
	for _, cs := range st.Children {
		r := dsl.ChildResult{Key: cs.Key, Exec: cs.Exec, Run: cs.Run, Status: cs.Status, Output: cs.Output,
			Failure: cs.Failure, LogsURL: cs.LogsURL}
		if !cs.StartedAt.IsZero() && !cs.CompletedAt.IsZero() {
			r.DurationMs = cs.CompletedAt.Sub(cs.StartedAt).Milliseconds()
		}
		out = append(out, r)
	}
	return out, nil
}

// suspender is dsl.Suspender: it tells the edge, then ends the attempt with
// errSuspended so runAttempt reports no exit.
type suspender struct {
	client    *agentapi.Client
	cancel    context.CancelCauseFunc
	suspended *atomic.Bool
}

func (s suspender) Suspend(ctx context.Context, sp dsl.Suspension) error {
	s.suspended.Store(true) // before the edge answers: its StopAgent may beat the reply
	err := s.client.Suspend(ctx, agentapi.Suspend{Until: sp.Until, Children: sp.Children, Event: sp.Event})
	if err != nil {
		s.suspended.Store(false)
		return err
	}
	s.cancel(errSuspended)
	return nil
}

// agentIO is dsl.IO.
type agentIO struct {
	client *agentapi.Client
	env    map[string]string // the attempt's allowlisted environment
}

func (agentIO) Now() time.Time { return time.Now() }

func (agentIO) NewID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (io agentIO) Getenv(key string) string {
	if v, ok := io.env[key]; ok {
		return v
	}
	return ""
}

func (io agentIO) PriorExecution(ctx context.Context, family string) (dsl.PriorExecution, bool, error) {
	p, err := io.client.Prior(ctx, family)
	if err != nil || !p.Found {
		return dsl.PriorExecution{}, false, err
	}
	return dsl.PriorExecution{Exec: p.Exec, Status: p.Status, CompletedAt: p.CompletedAt, Output: p.Output}, true, nil
}

// ioEnv is the part of the agent's environment runs may read through io.Getenv.
func ioEnv() map[string]string {
	env := map[string]string{}
	for _, k := range []string{"TZ", "LANG", "CI"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return env
}

var errSuspended = errors.New("the run suspended this attempt")

// blobCapabilities gives the run its cache and artifacts over the blob store of Start
// (none without one).
func (s *server) blobCapabilities(c *dsl.Ctx, st agentapi.Start, log *slog.Logger) {
	b := st.Blobs
	if b.Endpoint == "" {
		return
	}
	store, err := blobstore.New(blobstore.Config{Endpoint: b.Endpoint, Bucket: b.Bucket, AccessKeyID: b.AccessKeyID, Secret: b.Secret, HTTPClient: s.cfg.HTTPClient})
	if err != nil {
		log.Warn("blob store unusable: no cache or artifacts", "err", err)
		return
	}
	if st.GitHub.Repo != "" {
		c.Cache = &cache.Cache{Store: store, Prefix: "cache/" + st.GitHub.Repo + "/", Writable: b.CacheWrite, Log: log,
			// Beside the toolchains' directories (HOME/.cache/go-build, …): adopting a
			// prefetched archive is then a rename.
			Stage: filepath.Join(s.cfg.Workspace, ".cache", "flare-prefetch")}
	}
	c.Artifacts = &artifacts.Artifacts{Store: store, Exec: st.Exec, Origin: st.EdgeURL, Log: log}
}
