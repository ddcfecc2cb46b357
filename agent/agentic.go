package agent

import (
	"context"
	"time"

	"github.com/flare-dispatch/flare-dispatch/agent/redact"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// The agentic capabilities over the agent API: the model gateway, the run's pull
// request comment and failed workflow runs. The edge holds every key; a typed failure
// it reports (424 capability_failed) comes back as that failure. What a run sends
// passes through the redactor first.

func capabilityErr(err error) error {
	if f, ok := agentapi.AsCapabilityFailure(err); ok {
		return dsl.FromFailure(dsl.Failure(f))
	}
	return githubErr(err)
}

// edgeModel is dsl.ModelGateway.
type edgeModel struct {
	client *agentapi.Client
	red    *redact.Redactor
}

func (m edgeModel) Complete(ctx context.Context, r dsl.ModelRequest) (dsl.ModelResponse, error) {
	r.System, r.User = m.red.String(r.System), m.red.String(r.User)
	resp, err := m.client.Model(ctx, r)
	if err != nil {
		return dsl.ModelResponse{}, capabilityErr(err)
	}
	return resp, nil
}

// edgeComments is dsl.PRComments.
type edgeComments struct {
	client *agentapi.Client
	red    *redact.Redactor
}

func (c edgeComments) FindComment(ctx context.Context, repo string, pr int, marker string) (string, bool, error) {
	got, err := c.client.FindComment(ctx, repo, pr, marker)
	if err != nil {
		return "", false, capabilityErr(err)
	}
	return got.Body, got.Found, nil
}

func (c edgeComments) PutComment(ctx context.Context, repo string, pr int, marker, body string) (dsl.CommentResult, error) {
	got, err := c.client.PutComment(ctx, repo, pr, marker, c.red.String(body))
	if err != nil {
		return dsl.CommentResult{}, capabilityErr(err)
	}
	return dsl.CommentResult{ID: got.ID, URL: got.URL, Created: got.Created}, nil
}

// edgeCI is dsl.CIRuns.
type edgeCI struct{ client *agentapi.Client }

func (c edgeCI) FailedRuns(ctx context.Context, repo string, since time.Time) ([]dsl.WorkflowRun, error) {
	got, err := c.client.FailedRuns(ctx, repo, since)
	if err != nil {
		return nil, capabilityErr(err)
	}
	return got.Runs, nil
}
