package runs

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// validateRepo accepts owner/name, or an absolute path or file:// URL (which only a
// local agent will clone; a production sandbox refuses them).
func validateRepo(field, repo string) *dsl.FieldError {
	switch {
	case repo == "":
		return &dsl.FieldError{Field: field, Message: "must not be empty"}
	case strings.ContainsFunc(repo, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return &dsl.FieldError{Field: field, Message: "must not contain control characters"}
	case ownerSlashName(repo) && !strings.Contains(repo, ".."):
		return nil
	case strings.HasPrefix(repo, "/") || strings.HasPrefix(repo, "file://"):
		return nil
	}
	return &dsl.FieldError{Field: field, Message: "must be owner/name"}
}

func fieldIndex(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }

// validateImage accepts an image reference (name[:tag][@digest]) or a pool name; it
// selects nothing (the pool's image runs), but a value that is no reference is an error.
func validateImage(field, image string) *dsl.FieldError {
	if image == "" {
		return nil
	}
	if len(image) > 255 || strings.ContainsFunc(image, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return &dsl.FieldError{Field: field, Message: "must be a container image reference (no spaces, at most 255 characters)"}
	}
	return nil
}

// checkHTTPURL accepts an http(s) URL without credentials or control characters.
func checkHTTPURL(field, raw string) *dsl.FieldError {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return &dsl.FieldError{Field: field, Message: "must be an http(s) URL without credentials"}
	}
	return nil
}

// stripANSI removes terminal colour codes (Playwright's error messages carry them).
func stripANSI(s string) string {
	if !strings.Contains(s, "\x1b[") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			// ESC [ then parameters [0-9;?]* then one letter; anything else stays.
			j := i + 2
			for j < len(s) && ansiParams.Has(s[j]) {
				j++
			}
			if j < len(s) && ansiFinal.Has(s[j]) {
				i = j
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

var ansiParams, ansiFinal = pattern.NewSet("0-9;?"), pattern.NewSet("A-Za-z")

// ownerSlashName reports whether repo is owner/name, each one or more of A-Za-z0-9_.-.
func ownerSlashName(repo string) bool {
	owner, name, ok := strings.Cut(repo, "/")
	return ok && repoNameChars.Run(owner, 1, len(owner)) && repoNameChars.Run(name, 1, len(name))
}
