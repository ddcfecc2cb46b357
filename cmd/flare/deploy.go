package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

var cmdDeploy = command{
	name:    "deploy",
	summary: "deploy to your Cloudflare account: create what is missing, migrate, build, set secrets, deploy",
	usage: `Wraps the pinned wrangler (worker/node_modules, from worker/package-lock.json). Each step
says what it does and, when it fails, how to fix it. A second run changes nothing that
exists: it creates only missing resources, puts only missing secrets, and applies only
new migrations (it deploys the current build again).

Steps: account (wrangler whoami) · d1 · r2 · kv (CONFIG_KV, IDEMPOTENCY_KV) · record
the ids in wrangler.jsonc · migrations · build (worker/build.sh) · images (Docker, when
an engine runs) · secrets (wrangler secret put, from --secrets) · deploy.

The secrets file (default .flare/cloudflare-secrets.json, mode 0600) holds HMAC_SECRET
and ADMIN_TOKEN, generated on the first run, plus any of GITHUB_APP_ID,
GITHUB_APP_PRIVATE_KEY, GITHUB_WEBHOOK_SECRET, GITHUB_APP_CLIENT_ID,
GITHUB_APP_CLIENT_SECRET, LOG_LINK_SECRET found in the environment. Values are never
printed; the secret's fingerprint is.

--dry-run prints every wrangler command without running it, except
'wrangler deploy --dry-run', which checks the configuration and the bundle offline.

Examples:
  npx --prefix worker wrangler login     # once, or export CLOUDFLARE_API_TOKEN
  flare deploy
  flare deploy --dry-run
  flare deploy --account-id 0123456789abcdef0123456789abcdef --config ./wrangler.jsonc`,
}

func init() { cmdDeploy.run = runDeploy }

// deploySecretNames are the Worker secrets deploy sets when it has a value for them.
var deploySecretNames = []string{"HMAC_SECRET", "ADMIN_TOKEN", "GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY",
	"GITHUB_WEBHOOK_SECRET", "GITHUB_APP_CLIENT_ID", "GITHUB_APP_CLIENT_SECRET", "LOG_LINK_SECRET"}

// kvBindings are the KV namespaces the Worker binds (contract §1): created as
// "<worker name>-<binding>".
var kvBindings = []string{"CONFIG_KV", "IDEMPOTENCY_KV"}

// stepError is a failed step: what failed and how to fix it.
type stepError struct {
	step, fix string
	err       error
}

func (e *stepError) Error() string { return fmt.Sprintf("step %s: %v", e.step, e.err) }

func fail(step string, err error, fix string) error {
	return &stepError{step: step, err: err, fix: fix}
}

type deployer struct {
	wrangler  string // the wrangler executable
	config    string // absolute path of wrangler.jsonc
	root      string // the repository root (wrangler.jsonc's directory)
	secrets   string // the local secrets file
	accountID string
	dryRun    bool
	out       io.Writer
	env       []string
}

func runDeploy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdDeploy, stderr)
	config := fs.String("config", "wrangler.jsonc", "the Worker's wrangler configuration")
	wrangler := fs.String("wrangler", envOr("FLARE_WRANGLER", ""), "wrangler executable (default: worker/node_modules/.bin/wrangler beside --config)")
	secrets := fs.String("secrets", filepath.Join(envOr("FLARE_DATA", ".flare"), "cloudflare-secrets.json"), "local secrets file (created, mode 0600)")
	account := fs.String("account-id", envOr("CLOUDFLARE_ACCOUNT_ID", ""), "Cloudflare account id (default: the only account wrangler can see)")
	dryRun := fs.Bool("dry-run", false, "print every wrangler command instead of running it (runs only wrangler deploy --dry-run)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	cfg, err := filepath.Abs(*config)
	if err != nil {
		fmt.Fprintln(stderr, "flare deploy:", err)
		return exitUsage
	}
	d := &deployer{config: cfg, root: filepath.Dir(cfg), secrets: *secrets, accountID: *account, dryRun: *dryRun, out: stdout,
		env: append(os.Environ(), "WRANGLER_SEND_METRICS=false", "WRANGLER_SEND_ERROR_REPORTS=false")}
	d.wrangler = *wrangler
	if d.wrangler == "" {
		d.wrangler = filepath.Join(d.root, "worker", "node_modules", ".bin", "wrangler")
	}
	if err := d.run(ctx); err != nil {
		var se *stepError
		if errors.As(err, &se) {
			fmt.Fprintf(stderr, "flare deploy: step %s failed: %v\n  fix: %s\n", se.step, se.err, se.fix)
		} else {
			fmt.Fprintln(stderr, "flare deploy:", err)
		}
		return exitTrouble
	}
	return exitOK
}

// wranglerConfig is what deploy reads from wrangler.jsonc.
type wranglerConfig struct {
	Name        string `json:"name"`
	D1Databases []struct {
		Binding      string `json:"binding"`
		DatabaseName string `json:"database_name"`
		DatabaseID   string `json:"database_id"`
	} `json:"d1_databases"`
	R2Buckets []struct {
		Binding    string `json:"binding"`
		BucketName string `json:"bucket_name"`
	} `json:"r2_buckets"`
	KVNamespaces []struct {
		Binding string `json:"binding"`
		ID      string `json:"id"`
	} `json:"kv_namespaces"`
	Containers []struct {
		ClassName string `json:"class_name"`
		Image     string `json:"image"`
	} `json:"containers"`
}

func (d *deployer) step(name, what string) {
	fmt.Fprintf(d.out, "\n▸ %s: %s\n", name, what)
}

func (d *deployer) run(ctx context.Context) error {
	src, err := os.ReadFile(d.config)
	if err != nil {
		return fail("config", err, "run flare deploy from the repository root, or pass --config path/to/wrangler.jsonc")
	}
	var cfg wranglerConfig
	if err := json.Unmarshal(stripJSONC(src), &cfg); err != nil {
		return fail("config", fmt.Errorf("%s: %w", d.config, err), "fix the JSON of wrangler.jsonc")
	}
	if len(cfg.D1Databases) != 1 || len(cfg.R2Buckets) != 1 || cfg.Name == "" {
		return fail("config", fmt.Errorf("%s: want a name, one d1_databases and one r2_buckets entry", d.config), "restore wrangler.jsonc from the repository")
	}
	if _, err := os.Stat(d.wrangler); err != nil {
		if p, lerr := exec.LookPath(d.wrangler); lerr == nil {
			d.wrangler = p
		} else {
			return fail("wrangler", fmt.Errorf("%s not found", d.wrangler), "install the pinned wrangler: (cd worker && npm ci)")
		}
	}
	if d.dryRun {
		fmt.Fprintln(d.out, "dry run: wrangler commands are printed, not run (except wrangler deploy --dry-run)")
	}

	secrets, err := d.loadSecrets()
	if err != nil {
		return err
	}
	if err := d.account(ctx); err != nil {
		return err
	}
	ids := map[string]string{}
	if err := d.d1(ctx, cfg.D1Databases[0].DatabaseName, ids); err != nil {
		return err
	}
	if err := d.r2(ctx, cfg.R2Buckets[0].BucketName); err != nil {
		return err
	}
	if err := d.kv(ctx, cfg.Name, ids); err != nil {
		return err
	}
	if err := d.record(src, ids); err != nil {
		return err
	}
	d.step("migrations", "apply new migrations to "+cfg.D1Databases[0].DatabaseName)
	if _, err := d.wr(ctx, "", "d1", "migrations", "apply", cfg.D1Databases[0].DatabaseName, "--remote"); err != nil {
		return fail("migrations", err, "check the SQL in migrations/ and `wrangler d1 migrations list "+cfg.D1Databases[0].DatabaseName+" --remote`")
	}
	d.step("build", "build the Worker (worker/build.sh --no-dry-run)")
	if err := d.sh(ctx, filepath.Join(d.root, "worker", "build.sh"), "--no-dry-run"); err != nil {
		return fail("build", err, "the Worker must build for js/wasm: run `bash worker/build.sh --no-dry-run` and fix what it reports")
	}
	if err := d.images(ctx, cfg); err != nil {
		return err
	}
	if err := d.putSecrets(ctx, secrets); err != nil {
		return err
	}
	url, err := d.deploy(ctx)
	if err != nil {
		return err
	}
	if d.dryRun {
		fmt.Fprintln(d.out, "\ndry run: nothing was created, set or deployed.")
		return nil
	}
	d.summary(url, secrets["HMAC_SECRET"])
	return nil
}

// loadSecrets reads the local secrets file, generating HMAC_SECRET and ADMIN_TOKEN
// the first time and adding the GitHub App's values from the environment.
func (d *deployer) loadSecrets() (map[string]string, error) {
	s := map[string]string{}
	b, err := os.ReadFile(d.secrets)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fail("secrets", fmt.Errorf("%s: %w", d.secrets, err), "fix or delete "+d.secrets+" (a JSON object of NAME: value)")
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, fail("secrets", err, "make "+d.secrets+" readable")
	}
	changed := false
	for _, name := range deploySecretNames {
		if v := os.Getenv(name); v != "" && s[name] != v {
			s[name], changed = v, true
		}
	}
	if s["HMAC_SECRET"] == "" {
		s["HMAC_SECRET"], changed = randomSecret(32), true
	}
	if s["ADMIN_TOKEN"] == "" {
		s["ADMIN_TOKEN"], changed = randomSecret(24), true
	}
	if !changed {
		return s, nil
	}
	if d.dryRun {
		fmt.Fprintf(d.out, "would write the secrets to %s (mode 0600)\n", d.secrets)
		return s, nil
	}
	if err := os.MkdirAll(filepath.Dir(d.secrets), 0o700); err != nil {
		return nil, fail("secrets", err, "make the directory of --secrets writable")
	}
	b, _ = json.MarshalIndent(s, "", "  ")
	if err := os.WriteFile(d.secrets, b, 0o600); err != nil {
		return nil, fail("secrets", err, "make "+d.secrets+" writable")
	}
	fmt.Fprintf(d.out, "secrets kept in %s (mode 0600)\n", d.secrets)
	return s, nil
}

func (d *deployer) account(ctx context.Context) error {
	d.step("account", "find the Cloudflare account")
	out, err := d.wr(ctx, "", "whoami", "--json")
	if d.dryRun {
		if d.accountID == "" {
			d.accountID = "<account-id>"
		}
		return nil
	}
	if err != nil {
		return fail("account", err, "log in with `npx --prefix worker wrangler login`, or export CLOUDFLARE_API_TOKEN (a token with Workers, D1, R2, KV and Containers edit rights)")
	}
	var who struct {
		LoggedIn bool `json:"loggedIn"`
		Accounts []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"accounts"`
	}
	if err := json.Unmarshal([]byte(out), &who); err != nil || !who.LoggedIn {
		return fail("account", fmt.Errorf("wrangler whoami: not logged in"), "log in with `npx --prefix worker wrangler login`, or export CLOUDFLARE_API_TOKEN")
	}
	if d.accountID == "" {
		if len(who.Accounts) != 1 {
			names := make([]string, 0, len(who.Accounts))
			for _, a := range who.Accounts {
				names = append(names, a.ID+" ("+a.Name+")")
			}
			return fail("account", fmt.Errorf("wrangler sees %d accounts: %s", len(who.Accounts), strings.Join(names, ", ")),
				"pass --account-id (or export CLOUDFLARE_ACCOUNT_ID)")
		}
		d.accountID = who.Accounts[0].ID
	}
	fmt.Fprintf(d.out, "account %s\n", d.accountID)
	d.env = append(d.env, "CLOUDFLARE_ACCOUNT_ID="+d.accountID)
	return nil
}

func (d *deployer) d1(ctx context.Context, name string, ids map[string]string) error {
	d.step("d1", "the metadata database "+name)
	find := func() (string, error) {
		out, err := d.wr(ctx, "", "d1", "list", "--json")
		if err != nil || d.dryRun {
			return "", err
		}
		var dbs []struct{ UUID, Name string }
		if err := json.Unmarshal([]byte(out), &dbs); err != nil {
			return "", fmt.Errorf("wrangler d1 list --json: %w", err)
		}
		for _, db := range dbs {
			if db.Name == name {
				return db.UUID, nil
			}
		}
		return "", nil
	}
	fix := "check the API token's D1 edit permission; `wrangler d1 list` shows what exists"
	id, err := find()
	if err != nil {
		return fail("d1", err, fix)
	}
	if id == "" {
		if _, err := d.wr(ctx, "if missing", "d1", "create", name); err != nil {
			return fail("d1", err, fix)
		}
		if id, err = find(); err != nil {
			return fail("d1", err, fix)
		}
		if id == "" && !d.dryRun {
			return fail("d1", fmt.Errorf("created %s but wrangler d1 list does not show it", name), fix)
		}
	} else {
		fmt.Fprintf(d.out, "exists: %s\n", id)
	}
	ids["d1"] = id
	return nil
}

func (d *deployer) r2(ctx context.Context, bucket string) error {
	d.step("r2", "the logs and artifacts bucket "+bucket)
	fix := "check the API token's R2 edit permission, and that R2 is enabled on the account (dashboard → R2)"
	out, err := d.wr(ctx, "", "r2", "bucket", "list")
	if err != nil {
		return fail("r2", err, fix)
	}
	// `wrangler r2 bucket list` prints labelled values: "name:           <bucket>".
	for _, line := range strings.Split(stripANSI(out), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "name:"); ok && strings.TrimSpace(v) == bucket {
			fmt.Fprintln(d.out, "exists")
			return nil
		}
	}
	if _, err := d.wr(ctx, "if missing", "r2", "bucket", "create", bucket); err != nil {
		return fail("r2", err, fix)
	}
	return nil
}

func (d *deployer) kv(ctx context.Context, worker string, ids map[string]string) error {
	d.step("kv", "the namespaces "+strings.Join(kvBindings, " and "))
	fix := "check the API token's Workers KV edit permission; `wrangler kv namespace list` shows what exists"
	list := func() (map[string]string, error) {
		out, err := d.wr(ctx, "", "kv", "namespace", "list")
		if err != nil || d.dryRun {
			return map[string]string{}, err
		}
		var nss []struct{ ID, Title string }
		if err := json.Unmarshal([]byte(out), &nss); err != nil {
			return nil, fmt.Errorf("wrangler kv namespace list: %w", err)
		}
		m := map[string]string{}
		for _, ns := range nss {
			m[ns.Title] = ns.ID
		}
		return m, nil
	}
	have, err := list()
	if err != nil {
		return fail("kv", err, fix)
	}
	created := false
	for _, b := range kvBindings {
		title := worker + "-" + b
		if id, ok := have[title]; ok {
			fmt.Fprintf(d.out, "exists: %s %s\n", title, id)
			continue
		}
		if _, err := d.wr(ctx, "if missing", "kv", "namespace", "create", title); err != nil {
			return fail("kv", err, fix)
		}
		created = true
	}
	if created {
		if have, err = list(); err != nil {
			return fail("kv", err, fix)
		}
	}
	for _, b := range kvBindings {
		id := have[worker+"-"+b]
		if id == "" && !d.dryRun {
			return fail("kv", fmt.Errorf("namespace %s-%s not listed after creating it", worker, b), fix)
		}
		ids["kv:"+b] = id
	}
	return nil
}

var (
	d1IDPattern    = regexp.MustCompile(`("database_id"\s*:\s*")[^"]*(")`)
	accountPattern = regexp.MustCompile(`(registry\.cloudflare\.com/)[^/"]+(/)`)
)

func kvIDPattern(binding string) *regexp.Regexp {
	return regexp.MustCompile(`("binding"\s*:\s*"` + regexp.QuoteMeta(binding) + `"\s*,\s*"id"\s*:\s*")[^"]*(")`)
}

// record writes the resources' ids (and the account in the images' registry path)
// into wrangler.jsonc, in place, keeping its comments; unchanged ids write nothing.
func (d *deployer) record(src []byte, ids map[string]string) error {
	d.step("record", "the ids in "+filepath.Base(d.config))
	if d.dryRun {
		fmt.Fprintln(d.out, "would record the D1 and KV ids and the account id in", d.config)
		return nil
	}
	out := src
	replace := func(re *regexp.Regexp, value, what string) error {
		if !re.Match(out) {
			return fail("record", fmt.Errorf("%s: no %s to fill in", d.config, what), "restore that entry of wrangler.jsonc from the repository")
		}
		out = re.ReplaceAll(out, []byte("${1}"+value+"${2}"))
		return nil
	}
	if err := replace(d1IDPattern, ids["d1"], `"database_id"`); err != nil {
		return err
	}
	for _, b := range kvBindings {
		if err := replace(kvIDPattern(b), ids["kv:"+b], `{ "binding": "`+b+`", "id": … }`); err != nil {
			return err
		}
	}
	out = accountPattern.ReplaceAll(out, []byte("${1}"+d.accountID+"${2}"))
	if bytes.Equal(out, src) {
		fmt.Fprintln(d.out, "unchanged")
		return nil
	}
	if err := os.WriteFile(d.config, out, 0o644); err != nil {
		return fail("record", err, "make "+d.config+" writable")
	}
	fmt.Fprintln(d.out, "recorded; commit wrangler.jsonc so the next deploy uses the same resources")
	return nil
}

// imageDockerfile is the Dockerfile that builds a sandbox image, from the image's name
// as sandbox-images/*/Dockerfile tag them: flare-agent is the lean image, flare-agent-X
// the one in sandbox-images/X (flare-agent-go, flare-agent-chromium). Any other name is
// built as the lean image.
func imageDockerfile(nameTag string) string {
	name, _, _ := strings.Cut(nameTag, ":")
	variant, ok := strings.CutPrefix(name, "flare-agent-")
	if !ok || variant == "" || strings.ContainsAny(variant, "/.") {
		variant = "lean"
	}
	return filepath.Join("sandbox-images", variant, "Dockerfile")
}

// images pushes the sandbox images when a Docker engine answers.
func (d *deployer) images(ctx context.Context, cfg wranglerConfig) error {
	d.step("images", "the sandbox images")
	type image struct{ tag, dockerfile string }
	var imgs []image
	for _, c := range cfg.Containers {
		_, nameTag, ok := strings.Cut(strings.TrimPrefix(c.Image, "registry.cloudflare.com/"), "/")
		if !ok {
			continue
		}
		imgs = append(imgs, image{nameTag, imageDockerfile(nameTag)})
	}
	docker := exec.CommandContext(ctx, "docker", "info")
	if _, err := exec.LookPath("docker"); err != nil || docker.Run() != nil {
		fmt.Fprintln(d.out, "no Docker engine here: the Containers need these images pushed once, from a machine with Docker:")
		for _, im := range imgs {
			fmt.Fprintf(d.out, "  docker build -t %s -f %s . && npx --prefix worker wrangler containers push %s\n", im.tag, im.dockerfile, im.tag)
		}
		return nil
	}
	out, err := d.wr(ctx, "", "containers", "images", "list", "--json")
	if err != nil {
		return fail("images", err, "check the API token's Containers permission (Workers Paid plan)")
	}
	var have []struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	_ = json.Unmarshal([]byte(out), &have)
	for _, im := range imgs {
		name, tag, _ := strings.Cut(im.tag, ":")
		if slices.ContainsFunc(have, func(h struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}) bool {
			return h.Name == name && slices.Contains(h.Tags, tag)
		}) {
			fmt.Fprintf(d.out, "exists: %s\n", im.tag)
			continue
		}
		if d.dryRun {
			fmt.Fprintf(d.out, "would run: docker build -t %s -f %s .\n", im.tag, im.dockerfile)
		} else {
			build := exec.CommandContext(ctx, "docker", "build", "-t", im.tag, "-f", im.dockerfile, ".")
			build.Dir, build.Stdout, build.Stderr = d.root, d.out, d.out
			if err := build.Run(); err != nil {
				return fail("images", fmt.Errorf("docker build %s: %w", im.tag, err), "fix the build of "+im.dockerfile)
			}
		}
		if _, err := d.wr(ctx, "if missing", "containers", "push", im.tag); err != nil {
			return fail("images", err, "check the API token's Containers permission (Workers Paid plan)")
		}
	}
	return nil
}

func (d *deployer) putSecrets(ctx context.Context, secrets map[string]string) error {
	d.step("secrets", "the Worker's secrets")
	out, err := d.wr(ctx, "", "secret", "list", "--format", "json")
	have := map[string]bool{}
	if err != nil {
		// Before the first deploy the Worker does not exist: `Worker "x" not found.`
		// (API code 10007), so it has no secrets; secret put creates it as a draft.
		if !strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), "10007") {
			return fail("secrets", err, "check the API token's Workers Scripts edit permission")
		}
	} else if !d.dryRun {
		var list []struct{ Name string }
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return fail("secrets", fmt.Errorf("wrangler secret list: %w", err), "update wrangler (worker/package.json)")
		}
		for _, s := range list {
			have[s.Name] = true
		}
	}
	for _, name := range deploySecretNames {
		v, ok := secrets[name]
		if !ok || v == "" {
			continue
		}
		if have[name] {
			fmt.Fprintf(d.out, "exists: %s\n", name)
			continue
		}
		if _, err := d.wrIn(ctx, v, "if missing", "secret", "put", name); err != nil {
			return fail("secrets", err, "set it by hand: `npx --prefix worker wrangler secret put "+name+"`")
		}
	}
	return nil
}

func (d *deployer) deploy(ctx context.Context) (string, error) {
	if d.dryRun {
		d.step("deploy", "check the configuration and bundle offline (wrangler deploy --dry-run)")
		d.dryRun = false // the one command a dry run runs
		defer func() { d.dryRun = true }()
		d.env = append(d.env, "CLOUDFLARE_CF_FETCH_ENABLED=false")
		outdir, err := os.MkdirTemp("", "flare-deploy-dry-run-")
		if err != nil {
			return "", fail("deploy", err, "make the temporary directory writable")
		}
		defer os.RemoveAll(outdir)
		out, err := d.wr(ctx, "", "deploy", "--dry-run", "--outdir", outdir)
		if err != nil {
			return "", fail("deploy", err, "fix what wrangler reports in wrangler.jsonc or the build")
		}
		for _, line := range strings.Split(stripANSI(out), "\n") {
			if strings.Contains(line, "Total Upload") || strings.Contains(line, "--dry-run: exiting now") {
				fmt.Fprintln(d.out, strings.TrimSpace(line))
			}
		}
		return "", nil
	}
	d.step("deploy", "upload and deploy the Worker")
	outFile := filepath.Join(os.TempDir(), fmt.Sprintf("flare-deploy-%d.ndjson", os.Getpid()))
	defer os.Remove(outFile)
	d.env = append(d.env, "WRANGLER_OUTPUT_FILE_PATH="+outFile)
	out, err := d.wr(ctx, "", "deploy")
	if err != nil {
		return "", fail("deploy", err, "fix what wrangler reports; a missing container image is pushed by the images step (needs Docker)")
	}
	// WRANGLER_OUTPUT_FILE_PATH gets one JSON object per line; the "deploy" one
	// lists the targets. The printed https://…workers.dev line is the fallback.
	if b, err := os.ReadFile(outFile); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var e struct {
				Type    string   `json:"type"`
				Targets []string `json:"targets"`
			}
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type == "deploy" {
				for _, t := range e.Targets {
					if strings.HasPrefix(t, "https://") {
						return t, nil
					}
				}
			}
		}
	}
	if m := regexp.MustCompile(`https://[A-Za-z0-9.-]+\.workers\.dev`).FindString(stripANSI(out)); m != "" {
		return m, nil
	}
	return "", fail("deploy", errors.New("deployed, but wrangler printed no workers.dev URL"),
		"enable the workers.dev route (dashboard → Workers → flare-dispatch → Settings → Domains) or set a route in wrangler.jsonc")
}

func (d *deployer) summary(url, hmac string) {
	fmt.Fprintf(d.out, "\n── flare-dispatch is deployed ──\n")
	fmt.Fprintf(d.out, "dispatcher:       %s\n", url)
	fmt.Fprintf(d.out, "secret:           fingerprint %s (HMAC_SECRET in %s)\n", edge.Fingerprint(hmac), d.secrets)
	fmt.Fprintf(d.out, "GitHub App:       create and install it at %s/v1/github/install/new\n", url)
	fmt.Fprintf(d.out, "\nIn each repository (gh CLI):\n")
	fmt.Fprintf(d.out, "  gh variable set FLARE_DISPATCH_URL --body %s\n", url)
	fmt.Fprintf(d.out, "  jq -r .HMAC_SECRET %s | gh secret set FLARE_DISPATCH_SECRET\n", d.secrets)
	fmt.Fprintf(d.out, "\nthen add a workflow (recipes/ has one per run), e.g. .github/workflows/offload-test.yml:\n%s", workflowSnippet)
}

const workflowSnippet = `
on: [pull_request]
jobs:
  offload-test:
    runs-on: ubuntu-latest
    steps:
      - uses: flare-dispatch/flare-dispatch/actions/flare-dispatch-action@main
        with:
          run: offload-test
          endpoint: ${{ vars.FLARE_DISPATCH_URL }}
          hmac-secret: ${{ secrets.FLARE_DISPATCH_SECRET }}
          mode: await
          inputs: |
            {"repo": "${{ github.repository }}", "sha": "${{ github.event.pull_request.head.sha }}", "command": "make test"}
`

// wr runs wrangler with args (or, in a dry run, prints it). note qualifies the
// printed command ("if missing").
func (d *deployer) wr(ctx context.Context, note string, args ...string) (string, error) {
	return d.wrIn(ctx, "", note, args...)
}

func (d *deployer) wrIn(ctx context.Context, stdin, note string, args ...string) (string, error) {
	args = append(args, "--config", d.config)
	line := "wrangler " + strings.Join(args, " ")
	if stdin != "" {
		line += " < (value from the secrets file)"
	}
	if d.dryRun {
		if note != "" {
			fmt.Fprintf(d.out, "would run (%s): %s\n", note, line)
		} else {
			fmt.Fprintf(d.out, "would run: %s\n", line)
		}
		return "", nil
	}
	fmt.Fprintf(d.out, "$ %s\n", line)
	cmd := exec.CommandContext(ctx, d.wrangler, args...)
	cmd.Dir = filepath.Join(d.root, "worker")
	if _, err := os.Stat(cmd.Dir); err != nil {
		cmd.Dir = d.root
	}
	cmd.Env = d.env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stripANSI(stderr.String() + "\n" + stdout.String()))
		if len(msg) > 2000 {
			msg = msg[len(msg)-2000:]
		}
		return stdout.String(), fmt.Errorf("%s: %v\n%s", line, err, msg)
	}
	return stdout.String(), nil
}

// sh runs a local build script (also in a dry run: it changes nothing remote).
func (d *deployer) sh(ctx context.Context, script string, args ...string) error {
	fmt.Fprintf(d.out, "$ %s %s\n", script, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "bash", append([]string{script}, args...)...)
	cmd.Dir, cmd.Env = d.root, d.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%v\n%s", err, strings.TrimSpace(out.String()))
	}
	fmt.Fprint(d.out, out.String())
	return nil
}

func randomSecret(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

func stripANSI(s string) string { return ansi.ReplaceAllString(s, "") }

// stripJSONC removes // and /* */ comments and trailing commas outside strings, so
// wrangler.jsonc parses as JSON.
func stripJSONC(src []byte) []byte {
	var out []byte
	inStr, esc := false, false
	for i := 0; i < len(src); i++ {
		c := src[i]
		if inStr {
			out = append(out, c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
			out = append(out, c)
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
			out = append(out, '\n')
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			i += 2
			for i+1 < len(src) && !(src[i] == '*' && src[i+1] == '/') {
				i++
			}
			i++
		default:
			out = append(out, c)
		}
	}
	return regexp.MustCompile(`,(\s*[}\]])`).ReplaceAll(out, []byte("$1"))
}
