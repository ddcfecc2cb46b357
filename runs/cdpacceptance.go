package runs

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// cdp-acceptance: boot the repository's app in the sandbox, open a browser session on
// it, and run the repository's acceptance command with CDP_WS_URL (the browser's CDP
// websocket) and CDP_TARGET_URL / BASE_URL (the app). The report the command writes
// (playwright-report/), its screenshots (artifacts/) and what the session saw
// (console, network, a screenshot per page, a trace) are uploaded and linked from the
// check. Red when the command fails, unless reportOnly.

// CDPAcceptanceInputs are cdp-acceptance's inputs.
type CDPAcceptanceInputs struct {
	Repo           string            `json:"repo"`
	SHA            string            `json:"sha"`
	AppBootCommand string            `json:"appBootCommand"`
	AppPort        int               `json:"appPort"`
	TestCommand    string            `json:"testCommand"`
	Env            map[string]string `json:"env,omitempty"`
	Secrets        []string          `json:"secrets,omitzero"`
	SecretPrefix   string            `json:"secretPrefix,omitempty"`
	TimeoutSec     int               `json:"timeoutSec,omitempty"`     // the test command's; default 600
	BootTimeoutSec int               `json:"bootTimeoutSec,omitempty"` // for the port; default 120
	ReportDir      string            `json:"reportDir,omitempty"`      // default playwright-report
	ScreenshotsDir string            `json:"screenshotsDir,omitempty"` // default artifacts
	ReportOnly     bool              `json:"reportOnly,omitempty"`
}

// CDPAcceptanceOutput is cdp-acceptance's output.
type CDPAcceptanceOutput struct {
	ExitCode       int         `json:"exitCode"`
	DurationMs     int64       `json:"durationMs"`
	ReportURI      string      `json:"reportUri,omitempty"`
	ScreenshotsURI string      `json:"screenshotsUri,omitempty"`
	BrowserURI     string      `json:"browserUri,omitempty"` // console, network, page screenshots, trace
	Browser        dsl.Capture `json:"browser"`
	LogURI         string      `json:"logUri,omitempty"`
	SummaryMd      string      `json:"summaryMd"`
}

// Default fills the defaults.
func (in *CDPAcceptanceInputs) Default() {
	if in.Secrets == nil {
		in.Secrets = []string{}
	}
	if in.TimeoutSec == 0 {
		in.TimeoutSec = offloadDefaultTimeoutSec
	}
	if in.BootTimeoutSec == 0 {
		in.BootTimeoutSec = 120
	}
	if in.ReportDir == "" {
		in.ReportDir = "playwright-report"
	}
	if in.ScreenshotsDir == "" {
		in.ScreenshotsDir = "artifacts"
	}
	in.SHA = strings.ToLower(in.SHA)
}

// Validate checks the inputs' values.
func (in *CDPAcceptanceInputs) Validate() error {
	base := OffloadTestInputs{Repo: in.Repo, SHA: in.SHA, Command: in.TestCommand, Env: in.Env, Secrets: in.Secrets, TimeoutSec: in.TimeoutSec}
	if err := base.Validate(); err != nil {
		if fe, ok := err.(*dsl.FieldError); ok && fe.Field == "command" {
			fe.Field = "testCommand"
		}
		return err
	}
	switch {
	case strings.TrimSpace(in.AppBootCommand) == "":
		return &dsl.FieldError{Field: "appBootCommand", Message: "must not be empty"}
	case in.AppPort < 1 || in.AppPort > 65535:
		return &dsl.FieldError{Field: "appPort", Message: "must be a TCP port (1..65535)"}
	case in.BootTimeoutSec < 1 || in.BootTimeoutSec > 900:
		return &dsl.FieldError{Field: "bootTimeoutSec", Message: "must be between 1 and 900"}
	}
	if fe := checkRelDir("reportDir", in.ReportDir); fe != nil {
		return fe
	}
	if fe := checkRelDir("screenshotsDir", in.ScreenshotsDir); fe != nil {
		return fe
	}
	return nil
}

// checkRelDir accepts a relative path inside the checkout.
func checkRelDir(field, p string) *dsl.FieldError {
	clean := path.Clean(p)
	if p == "" || path.IsAbs(p) || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return &dsl.FieldError{Field: field, Message: "must be a relative path inside the repository"}
	}
	return nil
}

// CDPAcceptance is the cdp-acceptance run.
var CDPAcceptance = dsl.Define(dsl.Spec{
	Name:        "cdp-acceptance",
	Version:     "1.0.0",
	Description: "Boot the app, attach a browser over CDP and run the repository's acceptance command against it.",
	Pool:        dsl.PoolBrowser,
	MaxDuration: 1800 * time.Second,
}, func(c *dsl.Ctx, in CDPAcceptanceInputs) (CDPAcceptanceOutput, error) {
	ws, secrets, err := checkoutWithSecrets(c, in.Repo, in.SHA, in.Secrets, in.SecretPrefix)
	if err != nil {
		return CDPAcceptanceOutput{}, err
	}
	env := mergeEnv(ws.Env, secrets, in.Env)

	app, err := dsl.BootApp(c, dsl.BootSpec{Dir: ws.Dir, Command: in.AppBootCommand, Port: in.AppPort,
		Timeout: time.Duration(in.BootTimeoutSec) * time.Second, Env: env})
	if err != nil {
		return CDPAcceptanceOutput{}, err
	}
	sess, err := openBrowser(c, dsl.SessionOptions{TargetURL: app.URL, Trace: true})
	if err != nil {
		return CDPAcceptanceOutput{}, err
	}
	defer sess.Close(context.WithoutCancel(c))

	testEnv := mergeEnv(env, map[string]string{"CDP_WS_URL": sess.WSEndpoint(), "CDP_TARGET_URL": app.URL, "BASE_URL": app.URL})
	timeout := time.Duration(in.TimeoutSec) * time.Second
	res, err := dsl.Step(c, "run-tests", func(ctx context.Context) (dsl.ExecResult, error) {
		return c.Sandbox.Exec(ctx, dsl.ExecRequest{Dir: ws.Dir, Command: in.TestCommand, Env: testEnv, Timeout: timeout})
	}, dsl.Timeout(timeout+2*time.Minute))
	if err != nil {
		return CDPAcceptanceOutput{}, err
	}
	captureDir := path.Join(ws.Dir, ".flare-browser")
	capture, arts, err := captureAndUpload(c, sess, "capture-browser", captureDir, 2*time.Minute,
		upload{"upload-report", "acceptance-report", path.Join(ws.Dir, in.ReportDir)},
		upload{"upload-screenshots", "screenshots", path.Join(ws.Dir, in.ScreenshotsDir)},
		upload{"upload-browser", "browser", captureDir})
	if err != nil {
		return CDPAcceptanceOutput{}, err
	}
	report, shots, browser := arts[0], arts[1], arts[2]
	out := CDPAcceptanceOutput{ExitCode: res.ExitCode, DurationMs: res.DurationMs, ReportURI: dirURL(report), ScreenshotsURI: dirURL(shots),
		BrowserURI: dirURL(browser), Browser: capture, LogURI: res.LogURI}
	out.SummaryMd = acceptanceSummary(res, capture, report, shots, browser)
	if res.ExitCode != 0 && !in.ReportOnly {
		return out, &dsl.AcceptanceFailed{ExitCode: res.ExitCode, SummaryMd: out.SummaryMd}
	}
	return out, nil
})

func acceptanceSummary(res dsl.ExecResult, cp dsl.Capture, report, shots, browser dsl.Artifact) string {
	var b strings.Builder
	if res.ExitCode == 0 {
		b.WriteString("**Acceptance: passed** (exit code 0)")
	} else {
		fmt.Fprintf(&b, "**Acceptance: failed** (exit code %d)", res.ExitCode)
	}
	fmt.Fprintf(&b, " in %.1f s\n\n", float64(res.DurationMs)/1000)
	b.WriteString("| Report | Screenshots | Browser (console, network, trace) |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| %s | %s | %s |\n\n", link("acceptance-report", report), link("screenshots", shots), link("browser", browser))
	fmt.Fprintf(&b, "Browser: %s, %s, %s (%s).", plural(cp.Pages, "page"), plural(cp.ConsoleErrors, "console error"),
		plural(cp.FailedLoads, "failed load"), plural(cp.Requests, "request"))
	if res.ExitCode != 0 {
		out := strings.TrimSpace(res.StdoutTail + "\n" + res.StderrTail)
		if out != "" {
			b.WriteString("\n\n" + fenced(tail(out, 3000)))
		}
	}
	return b.String()
}
