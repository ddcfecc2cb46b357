package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
)

// Perform carries out one effect now; both platforms call it from the effect queue
// (edge/effectqueue), which keeps each execution's effects in order. Failures are
// logged: every effect is repeated by the actors when it matters (Recover re-projects).
// A start the sandbox port refused is also reported to the run actor at once
// (AgentStartFailed), which retries it with backoff and then fails the run with
// SandboxStartFailed, instead of holding its slot through the agent's boot grace; if
// that report is lost too, the boot grace still ends the attempt.
func (s *Server) Perform(ctx context.Context, from actors.Addr, e actors.Effect) {
	var err error
	switch e := e.(type) {
	case actors.StartAgent:
		if err = s.startAgent(ctx, e); err != nil && ctx.Err() == nil {
			m := actors.AgentStartFailed{Exec: e.Exec, Attempt: e.Attempt, Cause: err.Error()}
			if serr := s.Actors.Send(actors.RunAddr(e.Exec), m); serr != nil {
				s.Log.Warn("reporting a refused agent start failed", "execution", e.Exec, "err", serr)
			}
		}
	case actors.StopAgent:
		err = s.Sandboxes.Stop(ctx, e.Sandbox, agentapi.Cancel{Exec: e.Exec, Attempt: e.Attempt, ServerToken: AgentServerToken(s.Config, e.Sandbox)})
	case actors.Progress:
		err = s.project(ctx, e)
	case actors.StepProgress:
		row := StepRow{Exec: e.Exec, Name: e.Step, Status: string(e.Status), Attempt: e.Attempt, StartedAt: e.At}
		if e.Status != actors.StepRunning {
			row.CompletedAt = e.At
		}
		if e.Failure != nil {
			row.ErrorTag = e.Failure.Tag
		}
		var res struct {
			ExitCode *int `json:"exitCode"`
		}
		if json.Unmarshal(e.Result, &res) == nil {
			row.ExitCode = res.ExitCode
		}
		err = s.Meta.PutStep(ctx, row)
	}
	if err != nil {
		s.Log.Warn("effect failed", "from", from.String(), "effect", fmt.Sprintf("%T", e), "err", err)
	}
}

func (s *Server) startAgent(ctx context.Context, e actors.StartAgent) error {
	ex, err := s.Meta.Execution(ctx, e.Exec)
	if err != nil {
		return fmt.Errorf("start agent %s: %w", e.Exec, err)
	}
	var p Params
	if err := json.Unmarshal(ex.Input, &p); err != nil {
		return fmt.Errorf("start agent %s: params: %w", e.Exec, err)
	}
	ttl := 2 * time.Hour
	if run, ok := s.Runs[p.Run]; ok && run.Spec().MaxDuration > 0 {
		ttl = run.Spec().MaxDuration + 10*time.Minute
	}
	now := s.Now()
	token := MintAgentToken(s.Config, AgentClaims{Exec: e.Exec, Attempt: e.Attempt, Expires: now.Add(ttl).Unix()})
	cacheWrite := s.cacheWritable(ctx, p)
	keyID, secret, err := blobcred.Mint(BlobRoot(s.Config), e.Exec, blobcred.ExecGrants(e.Exec, p.Repo, cacheWrite), ttl, now)
	if err != nil {
		return fmt.Errorf("start agent %s: blob credentials: %w", e.Exec, err)
	}
	start := agentapi.Start{
		Exec: e.Exec, Attempt: e.Attempt, Run: p.Run, EdgeURL: s.originOf(p), Token: token,
		GitHub: agentapi.GitHub{Repo: p.Repo, Ref: p.Ref, SHA: p.SHA, PRNumber: p.PRNumber},
		Inputs: p.Inputs, Local: s.Config.Local,
		Blobs: agentapi.Blobs{Endpoint: s.Config.BlobEndpoint, Bucket: s.Config.BlobBucket, AccessKeyID: keyID, Secret: secret,
			Expires: now.Add(ttl), LogPrefix: "logs/" + e.Exec + "/", CacheWrite: cacheWrite, LogQuota: int64(s.Config.LogQuotaMB) << 20},
	}
	start.ServerToken = AgentServerToken(s.Config, e.Sandbox)
	if e.Pool == dsl.PoolBrowser && s.Config.BrowserMode == "remote" && s.BrowserCDP != nil {
		start.Browser.CDPURL = BrowserCDPURL(s.Config, s.originOf(p), AgentClaims{Exec: e.Exec, Attempt: e.Attempt, Expires: now.Add(ttl).Unix()})
	}
	return s.Sandboxes.Start(ctx, e.Sandbox, e.Pool, start)
}

// project writes the status to the executions table and the check-run.
func (s *Server) project(ctx context.Context, p actors.Progress) error {
	ex, err := s.Meta.Execution(ctx, p.Exec)
	if err != nil {
		return fmt.Errorf("project %s: %w", p.Exec, err)
	}
	var params Params
	_ = json.Unmarshal(ex.Input, &params)
	upd := Execution{ID: p.Exec, Status: string(p.Status)}
	if p.Status.Terminal() {
		upd.CompletedAt = p.At
		upd.Summary = p.Output
	}
	report := RenderCheck(ex.Run, p, s.ViewerLink(s.originOf(params), p.Exec))
	report.Install = params.InstallationID
	s.afterProgress(ctx, ex, params, p, &report)
	if sandbox, err := s.tickSandboxClock(ctx, p); err != nil {
		s.Log.Warn("sandbox time not recorded", "execution", p.Exec, "err", err)
	} else if p.Status.Terminal() {
		// Costs never fail a run: a cost that could not be priced or stored is logged.
		c, err := s.executionCost(ctx, ex, sandbox)
		if err != nil {
			s.Log.Warn("cost not recorded", "execution", p.Exec, "err", err)
		}
		report.Summary += "\n\n" + c.Markdown()
	}
	s.attachFindings(ctx, &report, p)
	b, _ := json.Marshal(report)
	if err := s.KV.Put(ctx, "check-run/"+p.Exec, string(b), 0); err != nil {
		return err
	}
	if s.Checks != nil && report.Install > 0 {
		id, err := s.Checks.Report(ctx, ex, report)
		if err != nil {
			// Reporting never fails a run; the next progress tries again.
			s.Log.Warn("check-run report failed", "execution", p.Exec, "err", err)
		} else {
			s.reported(ctx, ex, id, report)
			if ex.CheckRunID == 0 {
				upd.CheckRunID = id
			}
		}
	}
	err = s.Meta.UpdateExecution(ctx, upd)
	// last: a slow mail server delays nothing people look at
	s.notify(ctx, ex, params, p, report.Summary)
	return err
}

// originOf is where an execution's links and agent calls go: PUBLIC_ORIGIN when set
// (it may have changed since the dispatch, e.g. a restarted flare up on a new port),
// else the origin the dispatch arrived at.
func (s *Server) originOf(p Params) string {
	if s.Config.PublicOrigin != "" {
		return s.Config.PublicOrigin
	}
	return p.Origin
}
