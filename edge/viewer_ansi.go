//go:build !js

package edge

import (
	"strings"

	terminal "github.com/buildkite/terminal-to-html/v3"
)

// renderANSI renders SGR colours as HTML spans with terminal-to-html; the log text is
// escaped. Native builds only: terminal-to-html executes text/template, whose
// reflection keeps every exported method linked, +930 KiB gzip in the Worker
// (viewer_ansi_js.go, specs/cloudflare.md).
func renderANSI(s string) string {
	return strings.TrimSuffix(terminal.Render([]byte(safeTerminalText(s))), "\n")
}
