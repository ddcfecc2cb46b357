package agent

import (
	"context"
	"crypto/subtle"
	"encoding/json"

	"github.com/flare-dispatch/flare-dispatch/agent/redact"
	"github.com/flare-dispatch/flare-dispatch/agentapi"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// edgeJournal is dsl.Journal over the edge's agent API (the run actor's journal).
// What it records passes through the redactor first.
type edgeJournal struct {
	client *agentapi.Client
	red    *redact.Redactor
}

var _ dsl.Journal = (*edgeJournal)(nil)

func (j *edgeJournal) Begin(ctx context.Context, step string) (bool, json.RawMessage, *dsl.Failure, error) {
	d, err := j.client.BeginStep(ctx, step)
	if err != nil {
		return false, nil, nil, err
	}
	return d.Done, d.Result, d.Failure, nil
}

func (j *edgeJournal) End(ctx context.Context, step string, result json.RawMessage, f *dsl.Failure) error {
	if f != nil {
		// A redacted copy: the caller's failure stays as it was.
		r := *f
		r.Message, r.Detail = j.red.String(r.Message), j.red.JSON(r.Detail)
		f = &r
	}
	return j.client.EndStep(ctx, step, j.red.JSON(result), f)
}

// edgeSecrets is dsl.SecretSource over the edge's agent API. Every value it hands out
// is registered with the redactor before the run sees it.
type edgeSecrets struct {
	client *agentapi.Client
	red    *redact.Redactor
}

var _ dsl.SecretSource = (*edgeSecrets)(nil)

func (s *edgeSecrets) Load(ctx context.Context, keys []string, prefix string, required bool) (map[string]string, error) {
	resp, err := s.client.Secrets(ctx, agentapi.SecretsRequest{Keys: keys, Prefix: prefix, Required: required})
	if err != nil {
		return nil, err
	}
	vals := make(map[string]string, len(keys))
	var missing []string
	for _, k := range keys {
		if v, ok := resp.Values[k]; ok {
			vals[k] = v
			s.red.Add(v)
		} else {
			missing = append(missing, k)
		}
	}
	if required && len(missing) > 0 {
		return nil, &dsl.SecretsMissing{Keys: missing}
	}
	return vals, nil
}

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
