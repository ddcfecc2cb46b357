//go:build !js

package edge

import (
	"strings"

	terminal "github.com/buildkite/terminal-to-html/v3"
)

// renderANSI renders text cleaned by safeTerminalText as HTML: SGR colours become
// spans (terminal-to-html), the text is escaped. Native builds only: terminal-to-html
// executes text/template, whose reflection keeps every exported method linked,
// +930 KiB gzip in the Worker (viewer_ansi_js.go, specs/cloudflare.md).
func renderANSI(safe string) string {
	if h, ok := plainHTML(safe); ok {
		return h
	}
	return strings.TrimSuffix(terminal.Render([]byte(safe)), "\n")
}

// plainHTML is what terminal-to-html makes of a line of printable ASCII and tabs that
// is not blank (most log lines), without parsing it onto a screen: the text escaped as
// it escapes it, trailing blanks dropped as its screen drops them. ok is false for any
// other line (escapes, non-ASCII, blank), which goes to terminal-to-html.
// TestPlainHTMLIsWhatTerminalToHTMLRenders holds the two equal.
func plainHTML(s string) (string, bool) {
	blank := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c > 0x7e {
			return "", false
		}
		blank = blank && (c == ' ' || c == '\t')
	}
	if blank {
		return "", false
	}
	return terminalEscaper.Replace(strings.TrimRight(s, " \t")), true
}

var terminalEscaper = strings.NewReplacer("&", "&amp;", "'", "&#39;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "/", "&#47;")
