// Package local assembles the embedded stack of `flare up`: the edge over SQLite
// metadata, the native actor host, the embedded S3-compatible store and agents as
// child processes, all kept under one data directory.
package local

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/actors/host"
	"github.com/flare-dispatch/flare-dispatch/actors/kinds"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobs"
	"github.com/flare-dispatch/flare-dispatch/edge/effectqueue"
	"github.com/flare-dispatch/flare-dispatch/edge/github"
	"github.com/flare-dispatch/flare-dispatch/edge/local/groupcommit"
	"github.com/flare-dispatch/flare-dispatch/edge/local/s3store"
	"github.com/flare-dispatch/flare-dispatch/edge/local/sandboxes"
	"github.com/flare-dispatch/flare-dispatch/edge/mail"
	"github.com/flare-dispatch/flare-dispatch/edge/sqlmeta"
	"github.com/flare-dispatch/flare-dispatch/migrations"
)

// Options configure a local stack.
type Options struct {
	DataDir      string // default ./.flare
	Addr         string // edge listen address, default 127.0.0.1:8787
	Getenv       func(string) string
	AgentCommand []string // how to start an agent: [flare-binary, agent]
	Runs         dsl.Registry
	Log          *slog.Logger
	Actors       kinds.Config // zero: kinds.DefaultConfig() with ADMISSION_CAP applied
	// NoIsolation runs agents and their commands as plain child processes. By default
	// each runs under bubblewrap (specs/trust.md) when it works here; when it does not,
	// Open logs a warning and runs them without (`flare up` refuses instead, unless
	// --no-isolation).
	NoIsolation bool
	// Workspaces is where sandboxes' workspaces live; default WorkspacesDir(DataDir),
	// outside the data directory so that nothing relative to a workspace reaches it.
	Workspaces string
	// AgentIdle is how long an agent may sit without an attempt before it is stopped
	// and its workspace removed; zero: FLARE_AGENT_IDLE (a Go duration), else 5m.
	AgentIdle time.Duration
	// FreshSandbox starts every sandbox as a Container starts, with nothing of earlier
	// runs on disk and none of the host's toolchain caches (`--fresh-sandbox`), so
	// cold starts and the blob-store caches are measured honestly.
	FreshSandbox bool
	// AgentBlobEndpoint is the blob endpoint agents are handed (default the embedded
	// store's own URL): a proxy in front of the store lets a test cut the sandboxes off
	// it, as a network fault between a Container and R2 would (internal/faults).
	AgentBlobEndpoint string
	// KeepWorkspaces keeps each run's workspace (and its agent until idle) after the
	// run ends, for debugging (--keep-workspace); by default a run's end removes both.
	KeepWorkspaces bool
}

// WorkspacesDir is the default workspaces directory of a data directory: under the
// system's temporary directory, named by a hash of the data directory's absolute path.
func WorkspacesDir(dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), "flare-sandboxes-"+hex.EncodeToString(sum[:6]))
}

// Stack is a running local stack.
type Stack struct {
	URL          string // the edge
	BlobURL      string // the embedded S3 store
	Secrets      Secrets
	Edge         *edge.Server
	Host         *host.Host
	Procs        *sandboxes.Procs
	DataDir      string
	Meta         *sqlmeta.Store
	Config       sqlmeta.Namespace // CONFIG_KV: run configuration and secrets
	Idempotency  sqlmeta.Namespace // IDEMPOTENCY_KV: delivery and dispatch dedup
	effects      *effectqueue.Queue
	storage      *storage // the disk-full guard (storage.go)
	srv, s3      *http.Server
	store        *s3store.Store
	db, reads    *sql.DB             // meta.db: its one writer connection, and its readers
	writer       *groupcommit.Writer // meta.db's writes, many to a transaction
	own          *owner              // the flock on the data directory, held until Close
	stopSchedule context.CancelFunc
	scheduled    chan struct{} // closed when the cron loop has returned
	closeOnce    sync.Once
	closeErr     error
}

// Secrets are generated once per data directory and kept in a 0600 file.
type Secrets struct {
	HMACSecret string `json:"HMAC_SECRET"`
	AdminToken string `json:"ADMIN_TOKEN"`
	BlobKeyID  string `json:"BLOB_ADMIN_KEY_ID"`
	BlobSecret string `json:"BLOB_ADMIN_SECRET"`
}

// Lock is what `flare up` writes so other commands find the stack.
type Lock struct {
	URL     string `json:"url"`
	BlobURL string `json:"blobUrl"`
	PID     int    `json:"pid"`
}

// SecretsPath and LockPath name the files in a data directory.
func SecretsPath(dir string) string { return filepath.Join(dir, "secrets.json") }
func LockPath(dir string) string    { return filepath.Join(dir, "flare.lock") }

// LoadSecrets reads the data directory's secrets, creating them on first use.
// Environment values (HMAC_SECRET, ADMIN_TOKEN) win over stored ones.
func LoadSecrets(dir string, getenv func(string) string) (Secrets, error) {
	var s Secrets
	path := SecretsPath(dir)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s); err != nil {
			return s, fmt.Errorf("%s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		s = Secrets{HMACSecret: random(32), AdminToken: random(24), BlobKeyID: "FLAREADMIN" + random(6), BlobSecret: random(32)}
		b, _ := json.MarshalIndent(s, "", "  ")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return s, err
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return s, err
		}
	default:
		return s, err
	}
	if v := getenv("HMAC_SECRET"); v != "" {
		s.HMACSecret = v
	}
	if v := getenv("ADMIN_TOKEN"); v != "" {
		s.AdminToken = v
	}
	return s, nil
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Open starts the stack and serves it until Close.
func Open(ctx context.Context, o Options) (*Stack, error) {
	if o.DataDir == "" {
		o.DataDir = ".flare"
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8787"
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, err
	}
	own, err := acquire(o.DataDir)
	if err != nil {
		return nil, err
	}
	st := &Stack{DataDir: o.DataDir, own: own}
	fail := func(err error) (*Stack, error) {
		st.Close(context.Background())
		return nil, err
	}
	if err := own.write(Lock{PID: os.Getpid()}); err != nil {
		return fail(err)
	}
	if err := tighten(o.DataDir); err != nil {
		return fail(err)
	}
	sec, err := LoadSecrets(o.DataDir, o.Getenv)
	if err != nil {
		return fail(err)
	}
	st.Secrets = sec
	st.storage = newStorage(o.DataDir, o.Log)
	cfg := edge.ConfigFromEnv(o.Getenv)
	cfg.HMACSecret, cfg.AdminToken, cfg.Local, cfg.BlobBucket = sec.HMACSecret, sec.AdminToken, true, "flare"

	// Blobs: the embedded S3 store on its own loopback port.
	st.store, err = s3store.New(filepath.Join(o.DataDir, "blobs"), edge.BlobRoot(cfg), sec.BlobKeyID, sec.BlobSecret)
	if err != nil {
		return fail(fmt.Errorf("blob store: %w", err))
	}
	s3ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	st.BlobURL = "http://" + s3ln.Addr().String()
	st.s3 = &http.Server{Handler: st.storage.blobGate(st.store.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go st.s3.Serve(s3ln)
	cfg.BlobEndpoint = st.BlobURL
	if o.AgentBlobEndpoint != "" {
		cfg.BlobEndpoint = o.AgentBlobEndpoint
	}
	bl, err := blobs.New(st.BlobURL, cfg.BlobBucket, sec.BlobKeyID, sec.BlobSecret, nil)
	if err != nil {
		return fail(err)
	}

	// Metadata and KV: SQLite.
	st.db, err = openSQLite(filepath.Join(o.DataDir, "meta.db"))
	if err != nil {
		return fail(err)
	}
	if err := migrations.Apply(ctx, st.db); err != nil {
		return fail(err)
	}
	if st.reads, err = openSQLiteReads(filepath.Join(o.DataDir, "meta.db")); err != nil {
		return fail(err)
	}
	st.writer = groupcommit.New(st.db, 256)
	st.Meta = &sqlmeta.Store{DB: st.db, Reads: st.reads, Writes: st.writer}
	st.Config = sqlmeta.Namespace{Store: st.Meta, Name: "CONFIG_KV"}
	st.Idempotency = sqlmeta.Namespace{Store: st.Meta, Name: "IDEMPOTENCY_KV"}

	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fail(fmt.Errorf("listen %s: %w", o.Addr, err))
	}
	st.URL = "http://" + ln.Addr().String()
	if cfg.PublicOrigin == "" {
		cfg.PublicOrigin = st.URL
	}

	// Installation tokens are cached in the KV, sealed, as on Cloudflare.
	gh, err := githubApp(o.Getenv, st.Meta, edge.TokenCacheKey(cfg), o.Log)
	if err != nil {
		ln.Close()
		return fail(err)
	}
	if o.Workspaces == "" {
		o.Workspaces = WorkspacesDir(o.DataDir)
	}
	if o.AgentIdle == 0 {
		o.AgentIdle = 5 * time.Minute
		if v := o.Getenv("FLARE_AGENT_IDLE"); v != "" {
			if o.AgentIdle, err = time.ParseDuration(v); err != nil || o.AgentIdle <= 0 {
				ln.Close()
				return fail(fmt.Errorf("FLARE_AGENT_IDLE %q is not a positive duration (e.g. 5m)", v))
			}
		}
	}
	absData, _ := filepath.Abs(o.DataDir)
	isolate := !o.NoIsolation
	if isolate {
		if err := sandboxes.CheckIsolation(); err != nil {
			isolate = false
			o.Log.Warn("local sandboxes run WITHOUT isolation: their commands can read the stack's secrets", "err", err)
		}
	}
	var goLayer string
	if o.FreshSandbox { // a Container's image pre-builds Go's standard library: so does this one's model
		if goLayer, err = sandboxes.GoLayer(ctx, "", o.Log); err != nil {
			o.Log.Warn("fresh sandboxes start without the Go image layer: every run compiles the standard library", "err", err)
		}
	}
	st.Procs = &sandboxes.Procs{Command: o.AgentCommand, Root: o.Workspaces, Log: o.Log, Isolate: isolate, DataDir: absData, IdleAfter: o.AgentIdle,
		Fresh: o.FreshSandbox, GoLayer: goLayer, KeepWorkspaces: o.KeepWorkspaces}
	st.Procs.WarmUp()
	deps := edge.Deps{Config: cfg, Runs: o.Runs, Meta: st.Meta, Blobs: bl, KV: st.Meta, ConfigKV: st.Config, IdempotencyKV: st.Idempotency, Sandboxes: st.Procs, Log: o.Log}
	if gh != nil { // a nil *github.Client must not become a non-nil port
		deps.Checks, deps.Tokens, deps.GitHub = gh, gh, gh
	}
	if u := strings.TrimSpace(o.Getenv("BROWSER_CDP_URL")); u != "" {
		deps.BrowserCDP = browserCDP{url: u}
	}
	// Locally OPENAI_BASE_URL/OPENAI_API_KEY select an OpenAI-compatible model backend.
	deps.Models, deps.OIDC = edge.AgenticFromEnv(o.Getenv, http.DefaultClient, o.Log)
	deps.Mailer = mail.FromEnv(o.Getenv, o.Log) // SMTP_HOST, else a logged sink
	st.Edge = edge.New(deps)
	st.store.SetEnded(edge.EndedLookup(st.Meta)) // an ended execution's blob credentials write nothing
	st.effects = effectqueue.New(st.perform, effectqueue.Options{Logger: o.Log})

	acfg := o.Actors
	if acfg.Admission.Cap == 0 {
		acfg = kinds.DefaultConfig()
		acfg.Admission.Cap = cfg.AdmissionCap
	}
	st.Host, err = host.Open(ctx, filepath.Join(o.DataDir, "actors.db"), kinds.Factory(acfg), st.effects, host.Options{Logger: o.Log, OnCommitError: st.storage.commitFailed})
	if err != nil {
		ln.Close()
		return fail(fmt.Errorf("actor host: %w", err))
	}
	st.Edge.Actors = st.Host

	st.srv = &http.Server{Handler: st.healthGate(st.Edge), ReadHeaderTimeout: 10 * time.Second}
	go st.srv.Serve(ln)
	var schedCtx context.Context
	schedCtx, st.stopSchedule = context.WithCancel(context.Background())
	st.scheduled = make(chan struct{})
	go func() {
		defer close(st.scheduled)
		schedule(schedCtx, st.Edge, time.Now)
	}()
	// The databases exist now (with their WAL files): they hold log tokens.
	if err := tighten(o.DataDir); err != nil {
		return fail(err)
	}
	if err := own.write(Lock{URL: st.URL, BlobURL: st.BlobURL, PID: os.Getpid()}); err != nil {
		return fail(err)
	}
	return st, nil
}

// perform is the edge's Perform plus what only the local stack does: the StopAgent of
// a run's end (its reason is the terminal status, actors/run's finish) retires the
// sandbox: its agent stops and its workspace goes (sandboxes.Procs.RunEnded).
func (st *Stack) perform(ctx context.Context, from actors.Addr, e actors.Effect) {
	st.Edge.Perform(ctx, from, e)
	if s, ok := e.(actors.StopAgent); ok && actors.Status(s.Reason).Terminal() {
		st.Procs.RunEnded(s.Sandbox)
	}
}

// Close stops the stack in the reverse order of its start, and returns what failed:
// it stops accepting work (cron, then the edge's listener, waiting for requests in
// flight), stops the actor host (no more effects), performs the effects it queued,
// then stops the agents (including any those effects started), and closes the stores
// last (effects read and write them). ctx bounds the whole; past it, what was not done
// is dropped, as in a crash, and healed by Recover on the next start. Later calls
// return the first one's result.
func (st *Stack) Close(ctx context.Context) error {
	st.closeOnce.Do(func() { st.closeErr = st.close(ctx) })
	return st.closeErr
}

func (st *Stack) close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	fail := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", what, err))
		}
	}
	if st.stopSchedule != nil {
		st.stopSchedule()
		<-st.scheduled
	}
	if st.srv != nil {
		fail("edge server", st.srv.Shutdown(ctx))
	}
	if st.Host != nil {
		fail("actor host", st.Host.Stop(ctx))
	}
	if st.effects != nil {
		fail("effects", st.effects.Close(ctx))
	}
	if st.Procs != nil {
		st.Procs.Close()
	}
	if st.s3 != nil {
		fail("blob server", st.s3.Shutdown(ctx))
	}
	if st.store != nil {
		fail("blob store", st.store.Close())
	}
	if st.writer != nil {
		fail("metadata writer", st.writer.Close())
	}
	if st.reads != nil {
		fail("metadata database readers", st.reads.Close())
	}
	if st.db != nil {
		fail("metadata database", st.db.Close())
	}
	if st.own != nil {
		fail("lock file", st.own.release())
	}
	return errors.Join(errs...)
}

// openSQLite opens a database in WAL mode with full sync and a busy timeout.
func openSQLite(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)")
	if err != nil {
		return nil, err
	}
	// One connection: SQLite serializes writers anyway, and its busy handler backs
	// off in coarse sleeps (a 2 s p99 on dispatch under 16 clients); a Go-side queue
	// is fair and fast.
	db.SetMaxOpenConns(1)
	return db, db.Ping()
}

// openSQLiteReads opens read-only connections to a database in WAL mode that
// openSQLite created. Readers do not block the writer nor wait for it: a dispatch's
// reads (its idempotency key, the learned installation) no longer queue behind the
// effect queue's projections and the other dispatches' fsyncs on the one writer.
func openSQLiteReads(path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	return db, db.Ping()
}

// FindStack reads the lock file of a running `flare up`; a stack still starting
// (no URL yet) is not found.
func FindStack(dir string) (Lock, error) {
	l, err := readLock(dir)
	if err != nil {
		return l, fmt.Errorf("no running stack under %s (start one with `flare up`): %w", dir, err)
	}
	if l.URL == "" {
		return l, fmt.Errorf("the stack under %s (pid %d) is still starting", dir, l.PID)
	}
	return l, nil
}

func readLock(dir string) (Lock, error) {
	var l Lock
	b, err := os.ReadFile(LockPath(dir))
	if err != nil {
		return l, err
	}
	return l, json.Unmarshal(b, &l)
}

// githubApp builds the GitHub App client (check-runs, clone tokens, the GitHub broker)
// from GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY (GITHUB_API_URL points it elsewhere,
// e.g. at a fake), with installation tokens sealed in the KV as on Cloudflare; nil
// without credentials: summaries are then only stored locally, clones anonymous.
func githubApp(getenv func(string) string, kv edge.KV, cacheKey []byte, log *slog.Logger) (*github.Client, error) {
	id, key := getenv("GITHUB_APP_ID"), getenv("GITHUB_APP_PRIVATE_KEY")
	if id == "" || key == "" {
		return nil, nil
	}
	appID, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("GITHUB_APP_ID %q is not a number", id)
	}
	c, err := github.New(github.Config{AppID: appID, PrivateKeyPEM: []byte(key), BaseURL: getenv("GITHUB_API_URL"),
		HTTP: &http.Client{Timeout: 30 * time.Second}, KV: kv, CacheKey: cacheKey, Log: log})
	if err != nil {
		return nil, fmt.Errorf("GitHub App: %w", err)
	}
	return c, nil
}
