package modelcfg_test

import (
	"errors"
	"testing"

	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/runs/modelcfg"
)

func TestResolve(t *testing.T) {
	cases := []struct {
		name    string
		cfg     map[string]string
		o       modelcfg.Overrides
		want    modelcfg.Resolved
		missing string
	}{
		{name: "nothing configured: the platform's default", want: modelcfg.Resolved{MaxDiffChars: 60000, MaxTokens: 4096}},
		{name: "workers-ai from config", cfg: map[string]string{"pr-review.backend": "workers-ai", "pr-review.workers-ai.model": "@cf/qwen/qwq-32b"},
			want: modelcfg.Resolved{Backend: "workers-ai", Model: "@cf/qwen/qwq-32b", MaxDiffChars: 60000, MaxTokens: 8192}},
		{name: "unset model names the key", cfg: map[string]string{"pr-review.backend": "anthropic"}, missing: "pr-review.anthropic.model"},
		{name: "alias reasonix is workers-ai in json mode", cfg: map[string]string{"pr-review.backend": "reasonix", "pr-review.reasonix.model": "@cf/m"},
			want: modelcfg.Resolved{Backend: "workers-ai", Model: "@cf/m", JSON: true, MaxDiffChars: 60000, MaxTokens: 8192}},
		{name: "clamps", cfg: map[string]string{"pr-review.backend": "anthropic", "pr-review.anthropic.model": "claude-x",
			"pr-review.anthropic.maxDiffChars": "5", "pr-review.anthropic.maxTokens": "999999", "pr-review.anthropic.mode": "json"},
			want: modelcfg.Resolved{Backend: "anthropic", Model: "anthropic/claude-x", JSON: true, MaxDiffChars: 1000, MaxTokens: 32768}},
		// Contract §12 row 29: dispatch overrides select bedrock without CONFIG_KV.
		{name: "override selects bedrock", o: modelcfg.Overrides{Backend: "bedrock", Model: "anthropic.claude-v2", RoleArn: "arn:aws:iam::1:role/r", Region: "eu-west-1"},
			want: modelcfg.Resolved{Backend: "bedrock", Model: "bedrock/anthropic.claude-v2", JSON: true, MaxDiffChars: 240000, MaxTokens: 4096,
				AWS: &dsl.ModelAWS{RoleArn: "arn:aws:iam::1:role/r", Region: "eu-west-1"}}},
		{name: "bedrock without a role", o: modelcfg.Overrides{Backend: "bedrock", Model: "m"}, missing: "pr-review.bedrock.roleArn"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := modelcfg.Resolve("pr-review", c.cfg, c.o)
			if c.missing != "" {
				var bu *dsl.BackendUnconfigured
				if !errors.As(err, &bu) || bu.Missing[0] != c.missing {
					t.Fatalf("%v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Backend != c.want.Backend || got.Model != c.want.Model || got.JSON != c.want.JSON || got.MaxDiffChars != c.want.MaxDiffChars ||
				got.MaxTokens != c.want.MaxTokens || (got.AWS == nil) != (c.want.AWS == nil) || (got.AWS != nil && *got.AWS != *c.want.AWS) {
				t.Fatalf("%+v want %+v", got, c.want)
			}
		})
	}
}
