package model

import (
	"context"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// DSL adapts the gateway to dsl.ModelGateway for callers inside the edge's process
// (the agent API route, `flare run`, tests): a run's request becomes a gateway request.
type DSL struct {
	G       *Gateway
	Subject string // OIDC subject of Bedrock calls: "<run>:<execution>"
}

// Complete implements dsl.ModelGateway.
func (d DSL) Complete(ctx context.Context, r dsl.ModelRequest) (dsl.ModelResponse, error) {
	res, err := d.G.Complete(ctx, FromDSL(r, d.Subject))
	return ToDSL(res), err
}

// FromDSL is the gateway request for a run's request.
func FromDSL(r dsl.ModelRequest, subject string) Request {
	return Request{Model: r.Model, System: r.System, User: r.User, Tools: r.Tools, MaxTokens: r.MaxTokens,
		Temperature: r.Temperature, Subject: subject}
}

// ToDSL is the run's view of a result.
func ToDSL(r Result) dsl.ModelResponse {
	return dsl.ModelResponse{Text: r.Text, ToolCalls: r.ToolCalls, InputTokens: r.InputTokens, OutputTokens: r.OutputTokens}
}
