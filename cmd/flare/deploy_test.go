package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/internal/ci"
)

// deployFixture is a copy of the repository's wrangler.jsonc in a temp root with a
// stub worker/build.sh, and the wrangler stand-in first on PATH.
type deployFixture struct {
	root, config, state, secrets string
	env                          []string
}

func newDeployFixture(t *testing.T) *deployFixture {
	t.Helper()
	root := t.TempDir()
	src, err := os.ReadFile("../../wrangler.jsonc")
	if err != nil {
		t.Fatal(err)
	}
	f := &deployFixture{root: root, config: filepath.Join(root, "wrangler.jsonc"), state: filepath.Join(root, "account"),
		secrets: filepath.Join(root, ".flare", "cloudflare-secrets.json")}
	must(t, os.WriteFile(f.config, src, 0o644))
	must(t, os.MkdirAll(filepath.Join(root, "worker"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "worker", "build.sh"), []byte("#!/usr/bin/env bash\necho built >>\"$(dirname \"$0\")/../builds\"\n"), 0o755))
	bin := filepath.Join(root, "bin")
	must(t, os.MkdirAll(bin, 0o755))
	standin, _ := filepath.Abs("testdata/wrangler-standin")
	must(t, os.Symlink(standin, filepath.Join(bin, "wrangler")))
	// No Docker engine in these tests: an empty PATH entry first hides a docker binary.
	f.env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "STANDIN_STATE="+f.state, "DOCKER_HOST=unix:///nonexistent.sock")
	for _, k := range deploySecretNames {
		f.env = append(f.env, k+"=")
	}
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *deployFixture) deploy(t *testing.T, extraEnv []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(flareBin, append([]string{"deploy", "--wrangler", "wrangler", "--config", f.config, "--secrets", f.secrets}, args...)...)
	cmd.Env = append(append([]string{}, f.env...), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

func (f *deployFixture) calls(t *testing.T) []string {
	b, _ := os.ReadFile(filepath.Join(f.state, "calls"))
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestDeployCreatesWhatIsMissingRecordsIdsAndIsIdempotent(t *testing.T) {
	f := newDeployFixture(t)
	code, out, errs := f.deploy(t, nil)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	want := []string{
		"whoami --json",
		"d1 list --json", "d1 create flare-dispatch-metadata", "d1 list --json",
		"r2 bucket list", "r2 bucket create flare-dispatch-runs",
		"kv namespace list", "kv namespace create flare-dispatch-CONFIG_KV", "kv namespace create flare-dispatch-IDEMPOTENCY_KV", "kv namespace list",
		"d1 migrations apply flare-dispatch-metadata --remote",
		"secret list --format json", "secret put HMAC_SECRET", "secret put ADMIN_TOKEN",
		"deploy",
	}
	if got := f.calls(t); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("wrangler calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The ids the stand-in handed out are now in wrangler.jsonc, comments kept.
	cfg, _ := os.ReadFile(f.config)
	d1, _ := os.ReadFile(filepath.Join(f.state, "d1"))
	kv, _ := os.ReadFile(filepath.Join(f.state, "kv"))
	for _, line := range strings.Split(strings.TrimSpace(string(d1)+string(kv)), "\n") {
		id := strings.Fields(line)[1]
		if !strings.Contains(string(cfg), `"`+id+`"`) {
			t.Fatalf("id %s (%s) not recorded in wrangler.jsonc:\n%s", id, line, cfg)
		}
	}
	if !strings.Contains(string(cfg), "registry.cloudflare.com/0123456789abcdef0123456789abcdef/flare-agent:0.1.0") ||
		!strings.Contains(string(cfg), "// Secrets (set with `wrangler secret put NAME`") {
		t.Fatalf("account not recorded or comments lost:\n%s", cfg)
	}
	// The secrets put are the local file's; the summary prints the fingerprint, never the secret.
	sec, err := os.ReadFile(f.secrets)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(f.secrets); st.Mode().Perm() != 0o600 {
		t.Fatalf("secrets file mode %v", st.Mode())
	}
	var hmac string
	for _, l := range strings.Split(string(sec), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), `"HMAC_SECRET": "`); ok {
			hmac = strings.TrimSuffix(strings.TrimSuffix(v, ","), `"`)
		}
	}
	fp := fingerprintOf(hmac)
	put, _ := os.ReadFile(filepath.Join(f.state, "secrets"))
	if !strings.Contains(string(put), "HMAC_SECRET "+fp) {
		t.Fatalf("HMAC_SECRET put was not the local one (%s):\n%s", fp, put)
	}
	if strings.Contains(out, hmac) || strings.Contains(errs, hmac) {
		t.Fatal("the secret was printed")
	}
	for _, s := range []string{"dispatcher:       https://flare-dispatch.acme.workers.dev", "fingerprint " + fp,
		"https://flare-dispatch.acme.workers.dev/v1/github/install/new", "gh variable set FLARE_DISPATCH_URL",
		"uses: flare-dispatch/flare-dispatch/actions/flare-dispatch-action@main", "docker build -t flare-agent:0.1.0"} {
		if !strings.Contains(out, s) {
			t.Fatalf("output lacks %q:\n%s", s, out)
		}
	}

	// A second run creates, records and puts nothing.
	before := len(f.calls(t))
	code, out, errs = f.deploy(t, nil)
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errs)
	}
	second := f.calls(t)[before:]
	want = []string{"whoami --json", "d1 list --json", "r2 bucket list", "kv namespace list",
		"d1 migrations apply flare-dispatch-metadata --remote", "secret list --format json", "deploy"}
	if strings.Join(second, "\n") != strings.Join(want, "\n") {
		t.Fatalf("second run's wrangler calls:\n%s\nwant:\n%s", strings.Join(second, "\n"), strings.Join(want, "\n"))
	}
	if cfg2, _ := os.ReadFile(f.config); !bytes.Equal(cfg, cfg2) {
		t.Fatal("the second run rewrote wrangler.jsonc")
	}
	if !strings.Contains(out, "unchanged") {
		t.Fatalf("second run does not say the config is unchanged:\n%s", out)
	}
}

func TestDeployDryRunRunsNoWrangler(t *testing.T) {
	f := newDeployFixture(t)
	// The stand-in would answer deploy --dry-run as a plain deploy; make it fail so the
	// test sees that only that command ran.
	code, out, errs := f.deploy(t, []string{"STANDIN_FAIL=--dry-run"}, "--dry-run")
	if code != exitTrouble || !strings.Contains(errs, "step deploy failed") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if got := f.calls(t); len(got) != 1 || !strings.HasPrefix(got[0], "deploy --dry-run --outdir ") {
		t.Fatalf("a dry run ran wrangler: %q", got)
	}
	for _, s := range []string{"would run: wrangler whoami --json", "would run (if missing): wrangler d1 create flare-dispatch-metadata",
		"would run (if missing): wrangler kv namespace create flare-dispatch-CONFIG_KV", "would run: wrangler d1 migrations apply flare-dispatch-metadata --remote",
		"would run (if missing): wrangler secret put HMAC_SECRET", "would write the secrets to"} {
		if !strings.Contains(out, s) {
			t.Fatalf("dry run output lacks %q:\n%s", s, out)
		}
	}
	if _, err := os.Stat(f.secrets); err == nil {
		t.Fatal("a dry run wrote the secrets file")
	}
}

func TestDeployFailuresNameTheStepAndTheFix(t *testing.T) {
	for _, tc := range []struct{ fail, want string }{
		{"whoami", "step account failed"},
		{"create", "step d1 failed"},
		{"bucket", "step r2 failed"},
		{"migrations", "step migrations failed"},
		{"put", "step secrets failed"},
	} {
		f := newDeployFixture(t)
		code, out, errs := f.deploy(t, []string{"STANDIN_FAIL=" + tc.fail})
		if code != exitTrouble || !strings.Contains(errs, tc.want) || !strings.Contains(errs, "\n  fix: ") || !strings.Contains(errs, "[code: 10000]") {
			t.Fatalf("STANDIN_FAIL=%s: exit %d\n%s\n%s", tc.fail, code, out, errs)
		}
	}
}

// TestDeployDryRunWithThePinnedWrangler runs the real wrangler of worker/package.json
// on the repository's own configuration: the one command a dry run runs, offline.
func TestDeployDryRunWithThePinnedWrangler(t *testing.T) {
	root, _ := filepath.Abs("../..")
	wrangler := filepath.Join(root, "worker", "node_modules", ".bin", "wrangler")
	if _, err := os.Stat(wrangler); err != nil {
		ci.Skip(t, "wrangler is not installed (cd worker && npm ci): %v", err)
	}
	before, _ := os.ReadFile(filepath.Join(root, "wrangler.jsonc"))
	cmd := exec.Command(flareBin, "deploy", "--dry-run", "--config", filepath.Join(root, "wrangler.jsonc"), "--secrets", filepath.Join(t.TempDir(), "s.json"))
	cmd.Env = append(os.Environ(), "CLOUDFLARE_API_TOKEN=", "CLOUDFLARE_ACCOUNT_ID=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Total Upload") || !strings.Contains(string(out), "dry run: nothing was created") {
		t.Fatalf("no bundle size from wrangler deploy --dry-run:\n%s", out)
	}
	if after, _ := os.ReadFile(filepath.Join(root, "wrangler.jsonc")); !bytes.Equal(before, after) {
		t.Fatal("a dry run changed wrangler.jsonc")
	}
}

func fingerprintOf(s string) string { return edge.Fingerprint(s) }

// Each image name wrangler.jsonc may bind is built from its own Dockerfile: before
// imageDockerfile, every name without "chromium" (flare-agent-go too) was built from the
// lean Dockerfile, so a Go pool would have pushed an image without Go.
func TestImageDockerfile(t *testing.T) {
	for nameTag, want := range map[string]string{
		"flare-agent:0.1.0":          "sandbox-images/lean/Dockerfile",
		"flare-agent-go:0.1.0":       "sandbox-images/go/Dockerfile",
		"flare-agent-chromium:0.1.0": "sandbox-images/chromium/Dockerfile",
		"my-own-image:1":             "sandbox-images/lean/Dockerfile",
		"flare-agent-../x:1":         "sandbox-images/lean/Dockerfile",
	} {
		if got := imageDockerfile(nameTag); got != filepath.FromSlash(want) {
			t.Errorf("imageDockerfile(%q) = %s, want %s", nameTag, got, want)
		}
		if _, err := os.Stat(filepath.Join("..", "..", imageDockerfile(nameTag))); err != nil {
			t.Errorf("%s: %v", nameTag, err)
		}
	}
}
