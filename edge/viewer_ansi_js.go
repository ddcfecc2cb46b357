//go:build js

package edge

import "html"

// renderANSI in the Worker: the text escaped, colours dropped (the SGR sequences
// removed), to keep terminal-to-html out of the bundle (viewer_ansi.go).
func renderANSI(s string) string {
	return html.EscapeString(stripSGR(safeTerminalText(s)))
}
