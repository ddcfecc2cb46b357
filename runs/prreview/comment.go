package prreview

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/internal/pattern"
)

// Marker is the last line of every pr-review comment: the run finds its comment on a
// pull request by it and updates that comment in place.
const Marker = "<!-- flare-dispatch: pr-review -->"

const statePrefix = "<!-- flare-dispatch: pr-review-state "

// maxRendered findings get a heading; the rest are counted (all are annotations).
const maxRendered = 25

// CommentInput is everything the comment shows.
type CommentInput struct {
	Repo     string // owner/name, for blob links
	SHA      string // the reviewed head commit
	PriorSHA string // the commit of the review this one follows ("" on a first review)
	Outcome  Outcome
	Reviews  Reviews
	Prepared Prepared
	MaxChars int    // the cap the diff was held to
	LogsURL  string // the execution's log viewer
	Style    string // default | compact
	// CompactMax is how many findings the compact style lists (default 7).
	CompactMax int
}

// Render is the review comment (markdown). Every piece of model text in it goes
// through Neutralise; the verdict comes only from the schema-constrained levels.
func Render(in CommentInput) string {
	if in.Style == "compact" {
		return renderCompact(in)
	}
	o := in.Outcome
	var b strings.Builder
	verdict := map[string]string{Approve: "✅ Approve", Comment: "💬 Comment", RequestChanges: "🛑 Request changes"}[o.Verdict]
	fmt.Fprintf(&b, "### AI code review — %s\n\n", verdict)
	fmt.Fprintf(&b, "Risk tier: `%s` · %d critical · %s · %s\n\n", o.Tier, o.Critical, plural(o.Warnings, "warning"), plural(o.Suggestions, "suggestion"))
	if in.PriorSHA != "" {
		newCount := 0
		for _, f := range o.Findings {
			if f.Status == StatusNew {
				newCount++
			}
		}
		fmt.Fprintf(&b, "Re-review since `%s`: %d resolved · %d still open · %d new\n\n", short(in.PriorSHA), len(o.Resolved),
			len(o.Findings)-newCount, newCount)
	}
	var reviewers []string
	for _, a := range in.Reviews.Agents {
		n := 0
		for _, f := range o.Findings {
			if f.Agent == a.Agent {
				n++
			}
		}
		if a.Failed != "" {
			reviewers = append(reviewers, a.Agent+" ⚠️ failed")
			continue
		}
		reviewers = append(reviewers, fmt.Sprintf("%s %d", a.Agent, n))
	}
	if len(reviewers) > 0 {
		fmt.Fprintf(&b, "Reviewers: %s\n\n", strings.Join(reviewers, " · "))
	}
	for _, a := range in.Reviews.Agents {
		if a.Failed != "" {
			fmt.Fprintf(&b, "> ⚠️ The %s reviewer could not complete: %s\n\n", a.Agent, Neutralise(a.Failed, 300))
		}
	}
	if in.Prepared.Truncated {
		fmt.Fprintf(&b, "> ✂️ The diff (%d chars) is larger than this model's budget of %d: the review covers the first portion only.\n\n",
			in.Prepared.FullChars, in.MaxChars)
	}
	if n := len(in.Prepared.Dropped); n > 0 {
		fmt.Fprintf(&b, "_Not reviewed (lockfiles, generated, minified or vendored): %s._\n\n", plural(n, "file"))
	}
	if len(o.Findings) == 0 {
		b.WriteString("_No findings._\n\n")
	} else {
		b.WriteString("| # | Severity | Change required | Location |\n|---|---|---|---|\n")
		for i, f := range o.Findings {
			if i == maxRendered {
				break
			}
			title := Neutralise(f.Title, 500)
			if f.Status == StatusNew && in.PriorSHA != "" {
				title = "🆕 " + title
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", i+1, badge(f.Level), cell(title), location(in.Repo, in.SHA, f))
		}
		b.WriteString("\n")
		for i, f := range o.Findings {
			if i == maxRendered {
				fmt.Fprintf(&b, "_…and %d more (see check annotations)._\n\n", len(o.Findings)-maxRendered)
				break
			}
			fmt.Fprintf(&b, "#### %d. %s — %s\n\n", i+1, badge(f.Level), Neutralise(f.Title, 500))
			fmt.Fprintf(&b, "📍 %s", location(in.Repo, in.SHA, f))
			if f.Agent != "" {
				fmt.Fprintf(&b, " · %s", f.Agent)
			}
			fmt.Fprintf(&b, "\n\n%s\n\n", Neutralise(f.Message, 2000))
		}
	}
	if len(o.Resolved) > 0 {
		b.WriteString("<details><summary>✅ Resolved since the last review</summary>\n\n")
		for _, f := range o.Resolved {
			fmt.Fprintf(&b, "- ~~%s~~ (%s)\n", Neutralise(f.Title, 500), locText(f))
		}
		b.WriteString("\n</details>\n\n")
	}
	if in.LogsURL != "" {
		fmt.Fprintf(&b, "📋 [View full logs & reviewed diff ↗](%s)\n\n", in.LogsURL)
	}
	b.WriteString(State(in.SHA, o.Findings))
	b.WriteString("\n" + Marker)
	return b.String()
}

func renderCompact(in CommentInput) string {
	o := in.Outcome
	var b strings.Builder
	head := map[string]string{Approve: "## ✅ LGTM", Comment: "## ⚠️ Minor Issues", RequestChanges: "## 🚫 Changes Requested"}[o.Verdict]
	b.WriteString(head + "\n\n")
	if len(o.Findings) == 0 {
		b.WriteString("No issues found.\n\n")
	} else {
		maxN := in.CompactMax
		if maxN <= 0 {
			maxN = 7
		}
		b.WriteString("| Severity | Location | Issue |\n|---|---|---|\n")
		for i, f := range o.Findings {
			if i == maxN {
				break
			}
			dot := map[string]string{LevelFailure: "🔴", LevelWarning: "🟡"}[f.Level]
			if dot == "" {
				dot = "🔵"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", dot, location(in.Repo, in.SHA, f), cell(Neutralise(f.Title, 500)))
		}
		if len(o.Findings) > maxN {
			fmt.Fprintf(&b, "\n_…and %d more (see check annotations)._\n", len(o.Findings)-maxN)
		}
		b.WriteString("\n")
	}
	if in.LogsURL != "" {
		fmt.Fprintf(&b, "📋 [View full logs & reviewed diff ↗](%s)\n\n", in.LogsURL)
	}
	b.WriteString(State(in.SHA, o.Findings))
	b.WriteString("\n" + Marker)
	return b.String()
}

// RenderFailure is the comment left when the review could not complete (the check is
// red as well): the reason, e.g. the configuration key to set.
func RenderFailure(reason, logsURL string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "⚠️ **pr-review could not complete**: %s\n\n", Neutralise(reason, 2000))
	if logsURL != "" {
		fmt.Fprintf(&b, "📋 [View full logs ↗](%s)\n\n", logsURL)
	}
	b.WriteString(Marker)
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func badge(level string) string {
	switch level {
	case LevelFailure:
		return "🛑 Critical"
	case LevelWarning:
		return "⚠️ Warning"
	}
	return "💡 Suggestion"
}

// cell makes text safe inside a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// locText is "path:12" or "path:12-14", from model text made safe (no brackets).
func locText(f Finding) string {
	p := strings.NewReplacer("[", "", "]", "", "(", "", ")", "").Replace(Neutralise(cleanPath(f.Path), 300))
	switch {
	case f.StartLine <= 0:
		return p
	case f.EndLine > f.StartLine:
		return fmt.Sprintf("%s:%d-%d", p, f.StartLine, f.EndLine)
	}
	return fmt.Sprintf("%s:%d", p, f.StartLine)
}

// location is the finding's place as a link to the reviewed blob (plain text for a
// repository that is not on GitHub: a local review).
func location(repo, sha string, f Finding) string {
	if !ownerName(repo) {
		return cell(locText(f))
	}
	return "[" + cell(locText(f)) + "](" + BlobURL(repo, sha, f.Path, f.StartLine, f.EndLine) + ")"
}

func cleanPath(p string) string {
	p = strings.TrimLeft(strings.TrimSpace(p), "/")
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, p)
}

// BlobURL links a file at a commit, with a line anchor when there is a line.
func BlobURL(repo, sha, p string, start, end int) string {
	var segs []string
	for s := range strings.SplitSeq(cleanPath(p), "/") {
		if s == "" || s == "." || s == ".." {
			continue
		}
		s = url.PathEscape(s)
		s = strings.NewReplacer("(", "%28", ")", "%29").Replace(s)
		segs = append(segs, s)
	}
	u := "https://github.com/" + repo + "/blob/" + sha + "/" + strings.Join(segs, "/")
	if start > 0 {
		u += fmt.Sprintf("#L%d", start)
		if end > start {
			u += fmt.Sprintf("-L%d", end)
		}
	}
	return u
}

var (
	repoPartChars = pattern.NewSet("A-Za-z0-9_.-")
	mentionChars  = pattern.NewSet("0-9A-Za-z_-")
)

// ownerName is the shape ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$.
func ownerName(repo string) bool {
	owner, name, ok := strings.Cut(repo, "/")
	return ok && repoPartChars.Run(owner, 1, len(owner)) && repoPartChars.Run(name, 1, len(name))
}

// unping puts a zero-width space after each '@' that a login character follows, so
// GitHub pings nobody.
func unping(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if s[i] == '@' && i+1 < len(s) && mentionChars.Has(s[i+1]) {
			b.WriteString("\u200b")
		}
	}
	return b.String()
}

// escapeLineStart escapes what would make s start a list, quote or heading: one of
// -+>= or digits then . or ), after leading white space (the regexp
// ^(\s*)([-+>=]|\d+[.)]) replaced by $1\$2).
func escapeLineStart(s string) string {
	rest := strings.TrimLeft(s, " \t\n\f\r")
	lead := s[:len(s)-len(rest)]
	if rest == "" {
		return s
	}
	if strings.IndexByte("-+>=", rest[0]) >= 0 {
		return lead + `\` + rest
	}
	d := 0
	for d < len(rest) && pattern.Digits.Has(rest[d]) {
		d++
	}
	if d > 0 && d < len(rest) && (rest[d] == '.' || rest[d] == ')') {
		return lead + `\` + rest
	}
	return s
}

// Neutralise makes model text inert in a GitHub comment: one line; no HTML (< and >
// removed, & escaped so entities cannot smuggle them back); no links, images or
// reference definitions ([ and ] removed); no code spans (backtick → '); no mention
// pings (a zero-width space after @); emphasis and table characters escaped; nothing
// at the start that makes a list, quote or heading; at most max characters, cut at a
// word.
func Neutralise(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.NewReplacer("<", "", ">", "", "[", "", "]", "", "`", "'", "&", "&amp;",
		`\`, `\\`, "*", `\*`, "_", `\_`, "~", `\~`, "#", `\#`, "|", `\|`, "!", `\!`).Replace(s)
	s = unping(s)
	s = escapeLineStart(s)
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)[:max]
		cut := string(r)
		if i := strings.LastIndexByte(cut, ' '); i > max/2 {
			cut = cut[:i]
		}
		s = strings.TrimRight(cut, `\`) + "…"
	}
	return s
}

// State is a hidden line carrying the reviewed commit and its open findings, so the
// next push's review can tell what it fixed. Base64 keeps model text inert in it.
func State(sha string, findings []Finding) string {
	type st struct {
		SHA      string    `json:"sha"`
		Findings []Finding `json:"findings"`
	}
	if len(findings) > 200 {
		findings = findings[:200]
	}
	b, _ := json.Marshal(st{sha, findings})
	return statePrefix + base64.RawURLEncoding.EncodeToString(b) + " -->"
}

// ParseState reads the state line of an earlier comment.
func ParseState(body string) (sha string, findings []Finding, ok bool) {
	i := strings.Index(body, statePrefix)
	if i < 0 {
		return "", nil, false
	}
	rest := body[i+len(statePrefix):]
	j := strings.Index(rest, " -->")
	if j < 0 {
		return "", nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest[:j])
	if err != nil {
		return "", nil, false
	}
	var st struct {
		SHA      string    `json:"sha"`
		Findings []Finding `json:"findings"`
	}
	if json.Unmarshal(raw, &st) != nil || st.SHA == "" {
		return "", nil, false
	}
	return st.SHA, st.Findings, true
}

// Annotations are the findings as check-run annotations (plain text there, but
// bounded all the same).
func Annotations(o Outcome) []dsl.Finding {
	var out []dsl.Finding
	for _, f := range o.Findings {
		if f.Path == "" || f.StartLine <= 0 {
			continue
		}
		title := strings.Join(strings.Fields(f.Title), " ")
		if f.Agent != "" {
			title = f.Agent + ": " + title
		}
		out = append(out, dsl.Finding{Path: cleanPath(f.Path), StartLine: f.StartLine, EndLine: f.EndLine, Level: f.Level,
			Title: truncRunes(title, 255), Message: truncRunes(f.Message, 4000)})
	}
	return out
}

func truncRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
