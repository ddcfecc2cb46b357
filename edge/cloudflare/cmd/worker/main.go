//go:build js && wasm

// Command worker is the Go half of the flare-dispatch Cloudflare Worker: the one
// long-lived Go runtime of an isolate, started by worker/src/runtime.js. It serves
// the edge (package edge) over the Cloudflare adapters, the agents' S3 endpoint at
// /s3/, Cron Triggers, and the actors' Durable Objects.
//
// Adapters: actors = Durable Object stubs (cloudflare.EdgeActors), metadata and KV =
// sqlmeta over D1 (RUNS_METADATA), blobs = the R2 binding (RUNS_STORAGE, edge/cloudflare/r2),
// sandboxes = the Container classes (edge/cloudflare/containers), check-runs,
// clone tokens and the GitHub broker = edge/github over the fetch transport when
// GITHUB_APP_ID is set.
//
// Vars beyond edge.ConfigFromEnv (wrangler.jsonc documents them all):
//
//	BLOB_BUCKET       the bucket name agents use in S3 paths (default flare-dispatch-runs)
//	BLOB_ENDPOINT     the agents' S3 endpoint (default /s3 on the edge's own origin)
//	KEEP_ALIVE_MS     how long an acquired Browser Rendering session outlives its socket
//	AGENT_URL         local runs only: sandboxes are agents on this host (local repos allowed)
//	BROWSER_CDP_DEV_URL  local runs only: a chromium's CDP websocket in place of Browser Rendering
//	FLARE_DEV_ROUTES  local runs only: "true" mounts /__dev/ (tests, bench)
//	FLARE_TEST_RUNS   local runs only: "true" registers the test runs (internal/testruns)
package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	_ "github.com/syumai/workers/cloudflare/d1" // database/sql driver "d1"

	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/containers"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/email"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/kv"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/r2"
	"github.com/flare-dispatch/flare-dispatch/edge/cloudflare/s3api"
	"github.com/flare-dispatch/flare-dispatch/edge/effectqueue"
	"github.com/flare-dispatch/flare-dispatch/edge/github"
	"github.com/flare-dispatch/flare-dispatch/edge/sqlmeta"
	"github.com/flare-dispatch/flare-dispatch/internal/testruns"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// s3Prefix is where the agents' S3 endpoint is mounted on the Worker's origin.
const s3Prefix = "/s3"

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	slog.SetDefault(log)
	getenv := cloudflare.Getenv
	dev := getenv("FLARE_DEV_ROUTES") == "true"

	cfg := edge.ConfigFromEnv(getenv)
	cfg.Local = getenv("AGENT_URL") != "" // agents on this host: local repository paths are theirs
	cfg.BlobBucket = or(getenv("BLOB_BUCKET"), "flare-dispatch-runs")
	cfg.BlobEndpoint = or(getenv("BLOB_ENDPOINT"), s3Prefix)

	db, err := sql.Open("d1", "RUNS_METADATA")
	if err != nil {
		panic(err) // only for an unknown driver
	}
	meta := &sqlmeta.Store{DB: db}
	bucket, err := r2.New("RUNS_STORAGE")
	if err != nil {
		log.Error("no blob store: logs and artifacts will fail", "err", err)
	}
	// CONFIG_KV and IDEMPOTENCY_KV are the original's KV namespaces (specs/config.md);
	// without a binding the edge keeps those keys in D1 like its own state.
	cfgKV, idemKV := kvBinding("CONFIG_KV", log), kvBinding("IDEMPOTENCY_KV", log)
	reg := registry(getenv("FLARE_TEST_RUNS") == "true")
	deps := edge.Deps{
		Config: cfg, Runs: reg, Actors: cloudflare.EdgeActors{}, Meta: meta, KV: meta,
		Sandboxes:  &containers.Sandboxes{Transport: cloudflare.SandboxTransport, PoolOf: containers.PoolFromMetadata(meta, reg)},
		HTTPClient: &cloudflare.FetchTransport{},
		Log:        log,
	}
	if bucket != nil {
		deps.Blobs = bucket
	}
	if cfgKV != nil {
		deps.ConfigKV = cfgKV
	}
	if idemKV != nil {
		deps.IdempotencyKV = idemKV
	}
	deps.Models, deps.OIDC = edge.AgenticFromEnv(getenv, deps.HTTPClient, log)
	deps.BrowserCDP = browserCDP(cfg, getenv)
	// Completion emails (edge/notify.go) over Email Routing; without the binding they
	// are skipped with a log line.
	if m, err := email.New("SEND_EMAIL"); err != nil {
		log.Info("email notify off", "err", err)
	} else {
		deps.Mailer = m
	}
	if err := githubApp(&deps, getenv); err != nil {
		log.Error("GitHub App disabled", "err", err)
	}
	server := edge.New(deps)

	// The actors' effects go to the edge, in order per execution, off the deliveries.
	// The queue lives as long as the isolate: nothing closes it.
	var effects cloudflare.Effects = effectqueue.New(server.Perform, effectqueue.Options{Workers: 4, Limit: 2 * time.Minute, Logger: log})
	var effectLog *cloudflare.EffectLog
	if dev {
		effectLog = &cloudflare.EffectLog{Next: effects}
		effects = effectLog
	}
	acfg := kinds.DefaultConfig()
	acfg.Admission.Cap = cfg.AdmissionCap
	host := cloudflare.NewHost(kinds.Factory(acfg), cloudflare.Actors{}, cloudflare.HostOptions{Effects: effects, Logger: log})

	mux := http.NewServeMux()
	mux.Handle("/", server)
	if bucket != nil {
		auth := &blobcred.Authenticator{}
		if cfg.HMACSecret != "" { // no secret, no credentials: every request is refused
			auth.Root = edge.BlobRoot(cfg)
		}
		mux.Handle(s3Prefix+"/", &s3api.Handler{Prefix: s3Prefix, Bucket: cfg.BlobBucket, Auth: auth, Store: bucket, Log: log, Ended: edge.EndedLookup(meta)})
	}
	fired := &firedLog{}
	if dev {
		mux.Handle("/__dev/", cloudflare.DevHandler(effectLog))
		devRoutes(mux, db, bucket, fired, map[string]edge.KV{"CONFIG_KV": deps.ConfigKV, "IDEMPOTENCY_KV": deps.IdempotencyKV})
	}
	// Preview URLs are offered to the edge before any route (contract §3).
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cfg.PreviewHostname != "" && server.IsPreviewHost(r.Host) {
			server.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
	cloudflare.Serve(cloudflare.Worker{
		Handler: handler,
		Actors:  host,
		Logger:  log,
		Scheduled: func(ctx context.Context, cron string, at time.Time) error {
			out := server.Scheduled(ctx, cron, at)
			log.Info("cron tick", "cron", cron, "at", at, "fired", len(out))
			fired.add(cron, at, out)
			return nil
		},
	})
}

// browserCDP is /v1/browser/cdp's browser (specs/cloudflare.md, "WebSockets"): a
// `browser`-pool run's own chromium, reached through its agent, unless BROWSER_MODE
// is "remote" (then every run gets Browser Rendering, as its agent does).
// BROWSER_CDP_DEV_URL stands in for Browser Rendering in local runs only.
func browserCDP(cfg edge.Config, getenv func(string) string) cloudflare.BrowserCDP {
	b := cloudflare.BrowserCDP{Rendering: cloudflare.Bound("BROWSER")}
	b.KeepAliveMS, _ = strconv.Atoi(getenv("KEEP_ALIVE_MS"))
	if cfg.Local {
		b.DevURL = getenv("BROWSER_CDP_DEV_URL")
	}
	if cfg.BrowserMode != "remote" {
		b.SandboxToken = func(sandbox string) string { return edge.AgentServerToken(cfg, sandbox) }
	}
	return b
}

// kvBinding is the KV namespace bound as name, or nil (logged) when it is not bound.
func kvBinding(name string, log *slog.Logger) *kv.Namespace {
	ns, err := kv.New(name)
	if err != nil {
		log.Warn("KV namespace not bound: its keys stay in D1", "binding", name, "err", err)
		return nil
	}
	return ns
}

// registry is the runs this Worker serves; with test runs for local tests only.
func registry(withTestRuns bool) dsl.Registry {
	r := runs.Registry()
	if withTestRuns {
		for _, x := range testruns.All() {
			r[x.Spec().Name] = x
		}
	}
	return r
}

// githubApp sets the check-run reporter, clone tokens and the GitHub broker from
// GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (GITHUB_API_URL points them elsewhere, e.g.
// at a fake); it leaves them nil without credentials. The client (edge/github, shared
// with `flare up`) sends through the fetch transport: no net/http client is linked.
func githubApp(d *edge.Deps, getenv func(string) string) error {
	id, key := getenv("GITHUB_APP_ID"), getenv("GITHUB_APP_PRIVATE_KEY")
	if id == "" || key == "" {
		return nil
	}
	appID, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return fmt.Errorf("GITHUB_APP_ID %q is not a number", id)
	}
	c, err := github.New(github.Config{AppID: appID, PrivateKeyPEM: []byte(key), BaseURL: getenv("GITHUB_API_URL"),
		HTTP: d.HTTPClient, KV: d.KV, CacheKey: edge.TokenCacheKey(d.Config), Log: d.Log})
	if err != nil {
		return err
	}
	d.Checks, d.Tokens, d.GitHub = c, c, c
	return nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
