package prreview

import (
	"slices"
	"strings"
)

// Verdicts.
const (
	Approve        = "approve"
	Comment        = "comment"
	RequestChanges = "request-changes"
)

// Outcome is the coordinated review: one list of findings, counts and the verdict.
type Outcome struct {
	Verdict     string    `json:"verdict"`
	Tier        string    `json:"tier"`
	Critical    int       `json:"critical"`
	Warnings    int       `json:"warnings"`
	Suggestions int       `json:"suggestions"`
	Findings    []Finding `json:"findings"`           // open (and, on a re-review, new) findings, most severe first
	Resolved    []Finding `json:"resolved,omitempty"` // findings of the last review this push fixed
}

func rank(level string) int {
	switch level {
	case LevelFailure:
		return 3
	case LevelWarning:
		return 2
	}
	return 1
}

func endOf(f Finding) int {
	if f.EndLine >= f.StartLine {
		return f.EndLine
	}
	return f.StartLine
}

// overlaps reports whether two findings are about the same place: the same file and
// overlapping lines, or the same file and title when either has no line.
func overlaps(a, b Finding) bool {
	if a.Path != b.Path {
		return false
	}
	if a.StartLine == 0 || b.StartLine == 0 {
		return normTitle(a.Title) == normTitle(b.Title)
	}
	return a.StartLine <= endOf(b) && b.StartLine <= endOf(a)
}

func normTitle(s string) string { return strings.Join(strings.Fields(strings.ToLower(s)), " ") }

// Dedup merges findings about the same place (reviewers overlap: security and
// code-quality both see an injection), keeping the most severe and, on ties, the
// first. A finding joins the first group any member of which it overlaps, so a chain
// of overlaps is one group whatever the order.
func Dedup(fs []Finding) []Finding {
	type group struct {
		best    Finding
		members []Finding
	}
	var groups []*group
	for _, f := range fs {
		var g *group
		for _, cand := range groups {
			if slices.ContainsFunc(cand.members, func(m Finding) bool { return overlaps(m, f) }) {
				g = cand
				break
			}
		}
		if g == nil {
			groups = append(groups, &group{best: f, members: []Finding{f}})
			continue
		}
		g.members = append(g.members, f)
		if rank(f.Level) > rank(g.best.Level) {
			g.best = f
		}
	}
	out := make([]Finding, 0, len(groups))
	for _, g := range groups {
		out = append(out, g.best)
	}
	return out
}

// Coordinate turns the reviewers' findings into the outcome: deduplicated, sorted
// (most severe first, then by place), counted, with the verdict: any failure ⇒
// request-changes, else any warning ⇒ comment, else approve.
func Coordinate(r Reviews, tier string) Outcome {
	var all []Finding
	for _, a := range r.Agents {
		all = append(all, a.Findings...)
	}
	return Summarise(Dedup(all), nil, tier)
}

// Summarise counts findings and derives the verdict (resolved ones count for nothing).
func Summarise(findings, resolved []Finding, tier string) Outcome {
	o := Outcome{Tier: tier, Findings: findings, Resolved: resolved}
	slices.SortStableFunc(o.Findings, func(a, b Finding) int {
		if d := rank(b.Level) - rank(a.Level); d != 0 {
			return d
		}
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return a.StartLine - b.StartLine
	})
	for _, f := range o.Findings {
		switch f.Level {
		case LevelFailure:
			o.Critical++
		case LevelWarning:
			o.Warnings++
		default:
			o.Suggestions++
		}
	}
	switch {
	case o.Critical > 0:
		o.Verdict = RequestChanges
	case o.Warnings > 0:
		o.Verdict = Comment
	default:
		o.Verdict = Approve
	}
	return o
}
