package runs

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// What the browser runs share: the checkout with its secrets, opening the run's
// browser session, and linking artifacts from a check-run summary.

// checkoutWithSecrets is the browser runs' first steps: the checkout at sha with its
// dependencies installed (checkout, install), then the declared secrets, all required.
func checkoutWithSecrets(c *dsl.Ctx, repo, sha string, secrets []string, prefix string) (dsl.Workspace, map[string]string, error) {
	ws, err := dsl.NewWorkspace(c, dsl.WorkspaceOptions{Repo: repo, SHA: sha, Install: true})
	if err != nil {
		return dsl.Workspace{}, nil, err
	}
	loaded, err := dsl.LoadSecrets(c, secrets, prefix, true)
	if err != nil {
		return dsl.Workspace{}, nil, err
	}
	return ws, loaded, nil
}

// mergeEnv is one environment from layers, a later layer's keys winning.
func mergeEnv(layers ...map[string]string) map[string]string {
	env := map[string]string{}
	for _, l := range layers {
		maps.Copy(env, l)
	}
	return env
}

// openBrowser opens the run's browser session and records its websocket endpoint as
// the step attach-cdp (contract: only the endpoint string is checkpointed; the session
// itself lives as long as the attempt, so a new attempt opens a new one).
func openBrowser(c *dsl.Ctx, o dsl.SessionOptions) (dsl.CDPSession, error) {
	if c.Browser == nil {
		return nil, &dsl.BrowserUnavailable{Reason: "transient", Cause: "this sandbox has no browser"}
	}
	s, err := c.Browser.NewCDPSession(c, o)
	if err != nil {
		return nil, err
	}
	if _, err := dsl.Step(c, "attach-cdp", func(context.Context) (attached, error) {
		return attached{WSEndpoint: s.WSEndpoint()}, nil
	}); err != nil {
		s.Close(context.WithoutCancel(c))
		return nil, err
	}
	return s, nil
}

type attached struct {
	WSEndpoint string `json:"wsEndpoint"`
}

// upload is one directory or file a browser run uploads as an artifact after its
// command: the step's name, the artifact's name and the path in the sandbox.
type upload struct{ step, name, path string }

// captureAndUpload is how a browser run ends after its command: what the session saw
// written to dir (the step captureStep, within timeout), then each upload in order
// (an empty or missing path uploads nothing). The artifacts come back in the order
// given.
func captureAndUpload(c *dsl.Ctx, sess dsl.CDPSession, captureStep, dir string, timeout time.Duration, uploads ...upload) (dsl.Capture, []dsl.Artifact, error) {
	capture, err := dsl.Step(c, captureStep, func(ctx context.Context) (dsl.Capture, error) {
		return sess.Capture(ctx, dir)
	}, dsl.Timeout(timeout))
	if err != nil {
		return dsl.Capture{}, nil, err
	}
	arts := make([]dsl.Artifact, len(uploads))
	for i, u := range uploads {
		if arts[i], err = dsl.UploadArtifact(c, u.step, u.name, u.path, true); err != nil {
			return dsl.Capture{}, nil, err
		}
	}
	return capture, arts, nil
}

// link is a markdown link to an artifact, or "—" when nothing was uploaded.
func link(label string, a dsl.Artifact) string {
	if a.URL == "" {
		return "—"
	}
	return "[" + label + "](" + dirURL(a) + ")"
}

// dirURL is where people browse an artifact: a directory's listing (or index.html)
// ends with a slash.
func dirURL(a dsl.Artifact) string {
	if a.Dir && !strings.HasSuffix(a.URL, "/") {
		return a.URL + "/"
	}
	return a.URL
}

// mdCell makes text safe inside a markdown table cell.
func mdCell(s string) string {
	s = strings.NewReplacer("|", "\\|", "\r", " ", "\n", " ", "`", "'").Replace(s)
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// fenced is text in a code fence that its content cannot close.
func fenced(s string) string {
	fence := "```"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	return fence + "\n" + strings.TrimRight(s, "\n") + "\n" + fence
}

// tail keeps the last n bytes of s, on a line boundary when it can.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
		s = s[i+1:]
	}
	return "…\n" + s
}

func plural(n int, one string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %ss", n, one)
}
