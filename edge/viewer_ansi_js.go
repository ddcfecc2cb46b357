//go:build js

package edge

import "html"

// renderANSI in the Worker: text cleaned by safeTerminalText escaped, colours dropped
// (the SGR sequences removed), to keep terminal-to-html out of the bundle
// (viewer_ansi.go).
func renderANSI(safe string) string {
	return html.EscapeString(stripSGR(safe))
}
