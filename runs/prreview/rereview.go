package prreview

// A re-review keeps the conversation going across pushes (the original reviewed each
// push from scratch, so a finding the model happened not to repeat vanished, fixed or
// not). The last review's open findings are held against the push that followed it
// (the diff from the last reviewed commit to this one):
//
//   - re-reported by a reviewer (same file, overlapping lines after the push moved
//     them, or the same title) ⇒ still open, carried forward with the new wording;
//   - not re-reported, and the push changed its lines or lines within three of them
//     (a guard inserted above; or it deleted the file, or the
//     last commit is unknown, e.g. after a force push) ⇒ resolved;
//   - not re-reported, and the push left its lines alone ⇒ still open: nothing fixed
//     it, the model just did not say it again. Its lines move with the push.
//
// Findings nobody reported before are new. Resolved findings are shown once, on the
// review that resolved them.

// Rereview merges the prior review's findings with this review's (deduplicated).
// push is the diff from the prior reviewed commit to this one; known is false when
// that diff could not be made (then "not re-reported" means resolved).
func Rereview(prior, current []Finding, push []FileDiff, known bool, tier string) Outcome {
	byPath := map[string]FileDiff{}
	for _, f := range push {
		byPath[f.Path] = f
	}
	used := make([]bool, len(current))
	var open, resolved []Finding
	for _, p := range prior {
		if p.Status == StatusResolved {
			continue
		}
		moved, touched := follow(p, byPath)
		if !known {
			touched = true
		}
		match := -1
		for i, c := range current {
			if !used[i] && (overlaps(moved, c) || (c.Path == p.Path && normTitle(c.Title) == normTitle(p.Title))) {
				match = i
				break
			}
		}
		switch {
		case match >= 0:
			used[match] = true
			c := current[match]
			if rank(p.Level) > rank(c.Level) {
				c.Level = p.Level // a carried finding keeps its severity unless it rose
			}
			c.Status = StatusOpen
			open = append(open, c)
		case touched:
			p.Status = StatusResolved
			resolved = append(resolved, p)
		default:
			moved.Status = StatusOpen
			open = append(open, moved)
		}
	}
	for i, c := range current {
		if !used[i] {
			c.Status = StatusNew
			open = append(open, c)
		}
	}
	return Summarise(open, resolved, tier)
}

// near is how close a change must come to a finding to count as touching it: fixes
// often land just above or below the flagged lines (a guard inserted before them).
const near = 3

// follow moves a finding's lines through a push: touched when a hunk changed lines
// within `near` lines of it (or removed its file), else shifted by the lines added or
// removed above it.
func follow(f Finding, byPath map[string]FileDiff) (Finding, bool) {
	d, ok := byPath[f.Path]
	if !ok {
		return f, false
	}
	if f.StartLine == 0 {
		return f, true // no line to follow: any change to the file may have fixed it
	}
	lo, hi := f.StartLine-near, endOf(f)+near
	shift := 0
	for _, h := range d.Hunks {
		if h.NewStart == 0 && h.NewLines == 0 {
			return f, true // the file was deleted
		}
		if h.OldLines == 0 { // a pure insertion after line OldStart
			if h.OldStart >= lo && h.OldStart <= hi {
				return f, true
			}
			if h.OldStart < f.StartLine {
				shift += h.NewLines
			}
			continue
		}
		oldEnd := h.OldStart + h.OldLines - 1
		if h.OldStart <= hi && oldEnd >= lo {
			return f, true
		}
		if oldEnd < f.StartLine {
			shift += h.NewLines - h.OldLines
		}
	}
	f.StartLine += shift
	if f.EndLine > 0 {
		f.EndLine += shift
	}
	return f, false
}
