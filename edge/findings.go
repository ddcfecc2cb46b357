package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// MaxAnnotations caps the annotations one execution attaches to its check-run (ten
// requests of 50): findings past it are counted in the summary instead.
const MaxAnnotations = 500

// GitHub's annotation limits.
const (
	maxAnnotationText  = 64 << 10 // message and raw_details, bytes
	maxAnnotationTitle = 255      // characters
)

// Annotation is one finding on a check-run (GitHub's check-run annotation).
type Annotation struct {
	Path       string `json:"path"`
	StartLine  int    `json:"startLine"`
	EndLine    int    `json:"endLine"`
	Level      string `json:"level"` // notice | warning | failure
	Title      string `json:"title,omitempty"`
	Message    string `json:"message"`
	RawDetails string `json:"rawDetails,omitempty"`
}

// Annotations turns a run's output findings (its top-level "findings" list of
// dsl.Finding) into check-run annotations GitHub accepts: findings without a usable
// path or message are dropped, lines and levels repaired, texts cut to GitHub's
// limits, at most MaxAnnotations. dropped counts the findings left out.
func Annotations(output json.RawMessage) (out []Annotation, dropped int) {
	var o struct {
		Findings []dsl.Finding `json:"findings"`
	}
	if len(output) == 0 || json.Unmarshal(output, &o) != nil {
		return nil, 0
	}
	for _, f := range o.Findings {
		path := strings.TrimPrefix(strings.ReplaceAll(f.Path, "\\", "/"), "./")
		if path == "" || strings.HasPrefix(path, "/") || strings.TrimSpace(f.Message) == "" {
			dropped++
			continue
		}
		if len(out) == MaxAnnotations {
			dropped++
			continue
		}
		a := Annotation{Path: path, StartLine: max(f.StartLine, 1), Level: f.Level, Title: cut(f.Title, maxAnnotationTitle, true),
			Message: cut(f.Message, maxAnnotationText, false), RawDetails: cut(f.RawDetails, maxAnnotationText, false)}
		a.EndLine = max(f.EndLine, a.StartLine)
		switch a.Level {
		case dsl.LevelNotice, dsl.LevelWarning, dsl.LevelFailure:
		default:
			a.Level = dsl.LevelWarning
		}
		out = append(out, a)
	}
	return out, dropped
}

// cut shortens s to n characters (runes) or n bytes, on a character boundary.
func cut(s string, n int, runes bool) string {
	if runes {
		if utf8.RuneCountInString(s) <= n {
			return s
		}
		return string([]rune(s)[:n-1]) + "…"
	}
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// attachFindings puts a successful run's findings on its completed check report, unless
// an earlier report already delivered them (GitHub appends annotations on every
// update, so a re-projected completion must not send them twice).
func (s *Server) attachFindings(ctx context.Context, r *CheckReport, p actors.Progress) {
	if p.Status != actors.StatusSuccess && p.Status != actors.StatusFailure {
		return
	}
	as, dropped := Annotations(p.Output)
	if len(as) == 0 && dropped == 0 {
		return
	}
	if dropped > 0 {
		r.Summary += fmt.Sprintf("\n\n_%d finding(s) not shown as annotations (over %d, or without a path or message)._", dropped, MaxAnnotations)
	}
	if _, sent, err := s.KV.Get(ctx, annotatedKey(p.Exec)); err == nil && sent {
		return
	}
	r.Annotations = as
}

// reported remembers what a successful check-run report established: which execution
// a check-run id belongs to (for check_run rerequested) and that the annotations are on
// GitHub.
func (s *Server) reported(ctx context.Context, ex Execution, id int64, r CheckReport) {
	if id > 0 && ex.CheckRunID != id {
		if err := s.KV.Put(ctx, checkRunKey(id), ex.ID, 0); err != nil {
			s.Log.Warn("recording check-run id failed", "execution", ex.ID, "err", err)
		}
	}
	if len(r.Annotations) > 0 {
		if err := s.KV.Put(ctx, annotatedKey(ex.ID), "1", 0); err != nil {
			s.Log.Warn("recording annotations sent failed", "execution", ex.ID, "err", err)
		}
	}
}

func annotatedKey(exec string) string { return "check-annotated:" + exec }
