// Package modelcfg resolves which model backend a run uses, from its dispatch's
// overrides and CONFIG_KV, under the run's namespace (pr-review, spec-drift,
// ci-triage):
//
//	<ns>.backend              workers-ai | anthropic | deepseek | bedrock | openai
//	                          (opencode and reasonix are workers-ai, as the original named it)
//	<ns>.<b>.model            required for the backend
//	<ns>.<b>.mode             tools | json
//	<ns>.<b>.maxDiffChars     clamped 1,000..1,000,000
//	<ns>.<b>.maxTokens        clamped 256..32,768
//	<ns>.bedrock.region       default us-east-1
//	<ns>.bedrock.roleArn      required for bedrock
//
// No backend anywhere means the platform's default (the edge's: locally the
// OPENAI_BASE_URL endpoint with --model).
package modelcfg

import (
	"context"
	"strconv"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Overrides are a dispatch's per-call choices (operator-trusted Action inputs).
type Overrides struct {
	Backend string
	Model   string
	Region  string
	RoleArn string
}

// Resolved is the backend a run calls.
type Resolved struct {
	Backend      string        `json:"backend,omitempty"` // "" = the platform's default
	Model        string        `json:"model,omitempty"`
	JSON         bool          `json:"json,omitempty"`
	MaxDiffChars int           `json:"maxDiffChars"`
	MaxTokens    int           `json:"maxTokens"`
	AWS          *dsl.ModelAWS `json:"aws,omitempty"`
}

// Request is the model request template of the resolved backend.
func (r Resolved) Request() dsl.ModelRequest {
	return dsl.ModelRequest{Backend: r.Backend, Model: r.Model, MaxTokens: r.MaxTokens, JSON: r.JSON, AWS: r.AWS}
}

// Keys are the CONFIG_KV keys Resolve may read.
func Keys(ns string) []string {
	keys := []string{ns + ".backend", ns + ".bedrock.region", ns + ".bedrock.roleArn"}
	for _, b := range []string{"workers-ai", "anthropic", "deepseek", "bedrock", "openai", "opencode", "reasonix"} {
		keys = append(keys, ns+"."+b+".model", ns+"."+b+".mode", ns+"."+b+".maxDiffChars", ns+"."+b+".maxTokens")
	}
	return keys
}

// Load reads the keys of ns and resolves.
func Load(ctx context.Context, cfg dsl.ConfigStore, ns string, o Overrides) (Resolved, error) {
	values := map[string]string{}
	if cfg != nil {
		v, err := cfg.Get(ctx, Keys(ns))
		if err != nil {
			return Resolved{}, err
		}
		values = v
	}
	return Resolve(ns, values, o)
}

// Resolve picks the backend: the override, else <ns>.backend, else the platform's
// default. A named backend without a model fails with *dsl.BackendUnconfigured naming
// the key to set.
func Resolve(ns string, cfg map[string]string, o Overrides) (Resolved, error) {
	name := strings.TrimSpace(o.Backend)
	if name == "" {
		name = strings.TrimSpace(cfg[ns+".backend"])
	}
	key := name // the config keys of an alias stay under the alias
	jsonDefault := false
	switch name {
	case "opencode":
		name = "workers-ai"
	case "reasonix":
		name, jsonDefault = "workers-ai", true
	}
	r := Resolved{Backend: name, Model: strings.TrimSpace(o.Model)}
	get := func(k string) string { return strings.TrimSpace(cfg[ns+"."+key+"."+k]) }
	switch name {
	case "", "openai":
		r.MaxDiffChars, r.MaxTokens = 60000, 4096
	case "workers-ai":
		r.MaxDiffChars, r.MaxTokens = 60000, 8192
	case "anthropic", "deepseek":
		r.MaxDiffChars, r.MaxTokens = 240000, 4096
		jsonDefault = name == "deepseek"
	case "bedrock":
		r.MaxDiffChars, r.MaxTokens, jsonDefault = 240000, 4096, true
	default:
		return Resolved{}, &dsl.BackendUnconfigured{Backend: name, Missing: []string{ns + ".backend (one of workers-ai, anthropic, deepseek, bedrock, openai)"}}
	}
	if name != "" {
		if r.Model == "" {
			r.Model = get("model")
		}
		if r.Model == "" && name != "openai" {
			return Resolved{}, &dsl.BackendUnconfigured{Backend: name, Missing: []string{ns + "." + key + ".model"}}
		}
		r.Model = prefixed(name, r.Model)
		r.MaxDiffChars = clamp(get("maxDiffChars"), r.MaxDiffChars, 1000, 1000000)
		r.MaxTokens = clamp(get("maxTokens"), r.MaxTokens, 256, 32768)
	}
	switch get("mode") {
	case "json":
		r.JSON = true
	case "tools":
		r.JSON = false
	default:
		r.JSON = jsonDefault
	}
	if name == "bedrock" {
		aws := &dsl.ModelAWS{RoleArn: strings.TrimSpace(o.RoleArn), Region: strings.TrimSpace(o.Region)}
		if aws.RoleArn == "" {
			aws.RoleArn = strings.TrimSpace(cfg[ns+".bedrock.roleArn"])
		}
		if aws.Region == "" {
			aws.Region = strings.TrimSpace(cfg[ns+".bedrock.region"])
		}
		if aws.Region == "" {
			aws.Region = "us-east-1"
		}
		if aws.RoleArn == "" {
			return Resolved{}, &dsl.BackendUnconfigured{Backend: name, Missing: []string{ns + ".bedrock.roleArn"}}
		}
		r.AWS = aws
	}
	return r, nil
}

// prefixed gives a model id its backend's route prefix when it has none.
func prefixed(backend, model string) string {
	switch backend {
	case "anthropic", "deepseek", "bedrock":
		if !strings.HasPrefix(model, backend+"/") {
			return backend + "/" + model
		}
	}
	return model
}

func clamp(v string, def, lo, hi int) int {
	n, err := strconv.Atoi(v)
	if err != nil {
		return def
	}
	return min(max(n, lo), hi)
}

// Unconfigured rewrites the gateway's "model" gap into the key a person sets: the
// gateway does not know the run's namespace.
func Unconfigured(ns string, err error) error {
	if bu, ok := err.(*dsl.BackendUnconfigured); ok {
		out := &dsl.BackendUnconfigured{Backend: bu.Backend}
		for _, m := range bu.Missing {
			if m == "model" {
				m = ns + "." + bu.Backend + ".model"
			}
			out.Missing = append(out.Missing, m)
		}
		return out
	}
	return err
}
