package edge

import (
	"context"
	"encoding/json"
	"sort"
	"time"
)

// Fired is what one cron tick did for one run.
type Fired struct {
	Run         string `json:"run"`
	ExecutionID string `json:"executionId,omitempty"`
	Skipped     string `json:"skipped,omitempty"` // gate | error text
	Deduped     bool   `json:"deduped,omitempty"`
}

// Crons lists every distinct cron string the runs declare (for wrangler's
// triggers.crons and the local scheduler).
func (s *Server) Crons() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range s.Runs {
		for _, sc := range r.Spec().Schedules {
			if !seen[sc.Cron] {
				seen[sc.Cron] = true
				out = append(out, sc.Cron)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Scheduled is schedule mode (contract §2.6): every run whose schedule's cron is this
// exact string fires, unless its gate says no; the idempotency key makes a repeated
// tick a no-op. Cloudflare's scheduled() and the local scheduler both call it.
func (s *Server) Scheduled(ctx context.Context, cron string, firedAt time.Time) []Fired {
	var out []Fired
	for _, name := range s.Runs.Names() {
		run := s.Runs[name]
		for _, sc := range run.Spec().Schedules {
			if sc.Cron != cron {
				continue
			}
			f := Fired{Run: name}
			if sc.Gate != nil && !sc.Gate(firedAt) {
				f.Skipped = "gate"
				out = append(out, f)
				continue
			}
			var in any = map[string]any{}
			if sc.Inputs != nil {
				in = sc.Inputs(firedAt)
			}
			raw, err := json.Marshal(in)
			if err == nil {
				raw, err = run.DecodeInputs(raw)
			}
			if err != nil {
				f.Skipped = "inputs: " + err.Error()
				s.Log.Error("scheduled run has invalid inputs", "run", name, "cron", cron, "err", err)
				out = append(out, f)
				continue
			}
			p := Params{Exec: sc.IdempotencyKey(firedAt), Run: name, Inputs: raw, Origin: s.Config.PublicOrigin}
			p.Repo, p.Ref, p.SHA, p.InstallationID = targetFromInputs(raw)
			st, err := s.Start(ctx, run, p)
			if err != nil {
				f.Skipped = err.Error()
				s.Log.Error("scheduled run failed to start", "run", name, "err", err)
			} else {
				f.ExecutionID, f.Deduped = p.Exec, !st.Created
			}
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		s.Log.Warn("cron tick matched no run", "cron", cron)
	}
	return out
}

// targetFromInputs lifts the github target from scheduled inputs (contract §2.6).
func targetFromInputs(raw json.RawMessage) (repo, ref, sha string, install int64) {
	var in struct {
		Repo           string  `json:"repo"`
		Ref            string  `json:"ref"`
		SHA            string  `json:"sha"`
		InstallationID float64 `json:"installationId"`
	}
	_ = json.Unmarshal(raw, &in)
	repo, ref, sha = in.Repo, in.Ref, in.SHA
	if repo == "" {
		repo = "schedule/unknown"
	}
	if sha == "" {
		sha = ref
	}
	if sha == "" {
		sha = "main"
	}
	if ref == "" {
		ref = "refs/heads/main"
	}
	return repo, ref, sha, int64(in.InstallationID)
}
