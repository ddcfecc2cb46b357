package browserruns_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// cdp-acceptance boots the fixture app, hands the acceptance script a real chromium
// over CDP_WS_URL, and links the report, the script's screenshot and the session's
// capture from the check. One assertion passes, one fails: red; reportOnly: green.
func TestCDPAcceptanceBootsTheAppAndAssertsOverCDP(t *testing.T) {
	needNode(t)
	w := newWorld(t)
	repo, sha := fixtureRepo(t, "app")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	run := func(exec string, extra string) (json.RawMessage, error) {
		in := `{"repo":"` + repo + `","sha":"` + sha + `","appBootCommand":"PORT=4319 node server.js","appPort":4319,` +
			`"testCommand":"node --experimental-websocket accept.js"` + extra + `}`
		norm, err := runs.CDPAcceptance.DecodeInputs(json.RawMessage(in))
		if err != nil {
			t.Fatal(err)
		}
		return runs.CDPAcceptance.Execute(w.execution(ctx, exec, "cdp-acceptance", "local/app").c, norm)
	}

	raw, err := run("cdp-red", "")
	var af *dsl.AcceptanceFailed
	if !errors.As(err, &af) || af.ExitCode != 1 {
		t.Fatalf("want AcceptanceFailed exit 1, got %v", err)
	}
	out := decode[runs.CDPAcceptanceOutput](t, raw) // the output survives the failure
	md := dsl.Markdown(af.Failure())
	for _, want := range []string{"**Acceptance: failed** (exit code 1)", "PASS the shop page has its title",
		"FAIL the shop offers free shipping", "[acceptance-report](" + w.origin + "/v1/artifacts/cdp-red/acceptance-report/)",
		"[screenshots](" + w.origin + "/v1/artifacts/cdp-red/screenshots/)", "[browser](" + w.origin + "/v1/artifacts/cdp-red/browser/)"} {
		if !strings.Contains(md, want) {
			t.Fatalf("check summary lacks %q:\n%s", want, md)
		}
	}
	// The links work through the edge: the report, the script's screenshot, and the
	// capture of the session (the script's own page included).
	if st, body := fetch(t, out.ReportURI); st != 200 || !strings.Contains(body, "FAIL the shop offers free shipping") {
		t.Fatalf("report %d %s", st, body)
	}
	if st, body := fetch(t, out.ScreenshotsURI+"home.png"); st != 200 || !strings.HasPrefix(body, "\x89PNG") {
		t.Fatalf("screenshot %d", st)
	}
	if st, body := fetch(t, out.BrowserURI+"network.ndjson"); st != 200 || !strings.Contains(body, `"url":"http://127.0.0.1:4319/"`) {
		t.Fatalf("network capture %d %s", st, body)
	}
	if out.Browser.Pages < 2 || out.Browser.Screenshots < 1 {
		t.Fatalf("capture %+v: want the session's page and the script's", out.Browser)
	}

	// reportOnly keeps the check green with the same findings.
	raw, err = run("cdp-report-only", `,"reportOnly":true`)
	if err != nil {
		t.Fatal(err)
	}
	if o := decode[runs.CDPAcceptanceOutput](t, raw); o.ExitCode != 1 || !strings.Contains(o.SummaryMd, "**Acceptance: failed**") {
		t.Fatalf("reportOnly output %+v", o)
	}
	// Only passing assertions: green.
	raw, err = run("cdp-green", `,"env":{"ACCEPT_ONLY_PASSING":"1"}`)
	if err != nil {
		t.Fatal(err)
	}
	if o := decode[runs.CDPAcceptanceOutput](t, raw); o.ExitCode != 0 || !strings.Contains(o.SummaryMd, "**Acceptance: passed**") {
		t.Fatalf("green output %+v", o)
	}
}
