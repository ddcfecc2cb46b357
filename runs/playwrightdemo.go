package runs

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// playwright-demo: run a Playwright script (any command) at a commit and upload what
// it recorded — the directory artifactPath as the demo-bundle artifact (screenshots,
// traces) — its output as playwright.log, and the video: the run opens a screencasting
// browser session first and gives the script its CDP websocket (CDP_WS_URL, for
// chromium.connectOverCDP), so every page the script opens there is recorded and
// uploaded as the video artifact (an index.html player, video.gif, the JPEG frames;
// Playwright's own recordVideo needs an ffmpeg build we do not download). Red when the
// command fails, unless reportOnly. The step gets the command's timeout plus two
// minutes (at most 30 min) and is never retried: a demo that half-ran is not run twice.

// PlaywrightDemoInputs are playwright-demo's inputs.
type PlaywrightDemoInputs struct {
	Repo         string            `json:"repo"`
	SHA          string            `json:"sha"`
	Command      string            `json:"command"`
	ArtifactPath string            `json:"artifactPath"` // relative to the checkout
	Env          map[string]string `json:"env,omitempty"`
	Secrets      []string          `json:"secrets,omitzero"`
	SecretPrefix string            `json:"secretPrefix,omitempty"`
	TimeoutSec   int               `json:"timeoutSec,omitempty"` // default 1200
	ReportOnly   bool              `json:"reportOnly,omitempty"`
}

// PlaywrightDemoOutput is playwright-demo's output.
type PlaywrightDemoOutput struct {
	ExitCode   int    `json:"exitCode"`
	DurationMs int64  `json:"durationMs"`
	VideoURI   string `json:"videoUri,omitempty"`  // the screencast's player, else the demo-bundle artifact
	BundleURI  string `json:"bundleUri,omitempty"` // the demo-bundle artifact
	GIFURI     string `json:"gifUri,omitempty"`    // the screencast as an animated GIF
	LogURI     string `json:"logUri,omitempty"`    // the playwright.log artifact
	SummaryMd  string `json:"summaryMd"`
}

const (
	demoDefaultTimeoutSec = 1200
	demoMaxStepSec        = 1800
	demoLogFile           = ".flare-playwright/playwright.log"
)

// Default fills the defaults.
func (in *PlaywrightDemoInputs) Default() {
	if in.Secrets == nil {
		in.Secrets = []string{}
	}
	if in.TimeoutSec == 0 {
		in.TimeoutSec = demoDefaultTimeoutSec
	}
	in.SHA = strings.ToLower(in.SHA)
}

// Validate checks the inputs' values.
func (in *PlaywrightDemoInputs) Validate() error {
	base := OffloadTestInputs{Repo: in.Repo, SHA: in.SHA, Command: in.Command, Env: in.Env, Secrets: in.Secrets, TimeoutSec: in.TimeoutSec}
	if err := base.Validate(); err != nil {
		return err
	}
	if fe := checkRelDir("artifactPath", in.ArtifactPath); fe != nil {
		return fe
	}
	return nil
}

// demoStepTimeout is min(exec + 120 s, 1800 s) (contract §12 row 26).
func demoStepTimeout(execSec int) time.Duration {
	return time.Duration(min(execSec+120, demoMaxStepSec)) * time.Second
}

// PlaywrightDemo is the playwright-demo run.
var PlaywrightDemo = dsl.Define(dsl.Spec{
	Name:        "playwright-demo",
	Version:     "1.0.0",
	Description: "Run a Playwright script and upload the video bundle it recorded and its log.",
	Pool:        dsl.PoolBrowser,
	MaxDuration: 1800 * time.Second,
}, func(c *dsl.Ctx, in PlaywrightDemoInputs) (PlaywrightDemoOutput, error) {
	ws, secrets, err := checkoutWithSecrets(c, in.Repo, in.SHA, in.Secrets, in.SecretPrefix)
	if err != nil {
		return PlaywrightDemoOutput{}, err
	}
	sess, err := openBrowser(c, dsl.SessionOptions{Screencast: true})
	if err != nil {
		return PlaywrightDemoOutput{}, err
	}
	defer sess.Close(context.WithoutCancel(c))
	// contract: env, then secrets override
	env := mergeEnv(map[string]string{"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "CDP_WS_URL": sess.WSEndpoint()}, ws.Env, in.Env, secrets)
	logFile := path.Join(ws.Dir, demoLogFile)
	// The output goes to the live command log and to playwright.log; the exit code
	// survives the pipe through a file (sh has no pipefail).
	cmd := fmt.Sprintf(`mkdir -p %[1]s && ( ( %[2]s ) 2>&1; echo $? > %[3]s ) | tee %[4]s; exit "$(cat %[3]s)"`,
		dsl.ShellQuote(path.Dir(logFile)), in.Command, dsl.ShellQuote(logFile+".rc"), dsl.ShellQuote(logFile))
	timeout := time.Duration(in.TimeoutSec) * time.Second
	res, err := dsl.Step(c, "run-playwright", func(ctx context.Context) (dsl.ExecResult, error) {
		return c.Sandbox.Exec(ctx, dsl.ExecRequest{Dir: ws.Dir, Command: cmd, Env: env, Timeout: timeout})
	}, dsl.Timeout(demoStepTimeout(in.TimeoutSec)), dsl.Retries(0))
	if err != nil {
		return PlaywrightDemoOutput{}, err
	}
	videoDir := path.Join(ws.Dir, ".flare-video")
	capture, arts, err := captureAndUpload(c, sess, "capture-video", videoDir, 5*time.Minute,
		upload{"upload-bundle", "demo-bundle", path.Join(ws.Dir, in.ArtifactPath)},
		upload{"upload-video", "video", videoDir},
		upload{"upload-log", "playwright.log", logFile})
	if err != nil {
		return PlaywrightDemoOutput{}, err
	}
	bundle, video, log := arts[0], arts[1], arts[2]
	out := PlaywrightDemoOutput{ExitCode: res.ExitCode, DurationMs: res.DurationMs, VideoURI: dirURL(bundle), BundleURI: dirURL(bundle), LogURI: log.URL}
	player := dsl.Artifact{}
	if capture.VideoFrames > 0 && video.URL != "" {
		out.VideoURI = dirURL(video) + "video/"
		out.GIFURI = dirURL(video) + "video/video.gif"
		player = dsl.Artifact{URL: out.VideoURI}
	}
	var b strings.Builder
	if res.ExitCode == 0 {
		b.WriteString("**Demo recorded** (exit code 0)")
	} else {
		fmt.Fprintf(&b, "**Demo failed** (exit code %d)", res.ExitCode)
	}
	fmt.Fprintf(&b, " in %.1f s\n\n| Video | Bundle | Log |\n|---|---|---|\n| %s | %s | %s |", float64(res.DurationMs)/1000,
		link(plural(capture.VideoFrames, "frame"), player), link("demo-bundle", bundle), link("playwright.log", log))
	if out.GIFURI != "" {
		fmt.Fprintf(&b, "\n\n![the demo](%s)", out.GIFURI)
	} else {
		b.WriteString("\n\nNo video: the script opened no page in the run's browser (connect to `CDP_WS_URL`).")
	}
	if bundle.URL == "" {
		fmt.Fprintf(&b, "\n\nThe command wrote nothing at `%s`.", mdCell(in.ArtifactPath))
	}
	if res.ExitCode != 0 {
		if t := strings.TrimSpace(res.StdoutTail); t != "" {
			b.WriteString("\n\n" + fenced(tail(t, 3000)))
		}
	}
	out.SummaryMd = b.String()
	if res.ExitCode != 0 && !in.ReportOnly {
		return out, &dsl.AcceptanceFailed{ExitCode: res.ExitCode, SummaryMd: out.SummaryMd}
	}
	return out, nil
})
