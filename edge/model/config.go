package model

import "strings"

// Env is the edge configuration the gateway reads (the Worker's own names).
type Env struct {
	AccountID    string // CLOUDFLARE_ACCOUNT_ID
	GatewayID    string // AI_GATEWAY_ID
	GatewayToken string // AI_GATEWAY_AUTH_TOKEN: cf-aig-authorization; BYOK provider keys live in the gateway
	APIToken     string // CLOUDFLARE_API_TOKEN: Workers AI's REST API

	OpenAIBaseURL string // OPENAI_BASE_URL: any OpenAI-compatible endpoint (local use)
	OpenAIKey     string // OPENAI_API_KEY
	OpenAIModel   string // OPENAI_MODEL or `flare run --model`

	BedrockRegion string // default region of bedrock calls (us-east-1)

	// GatewayBase and CloudflareAPI are AI Gateway's and Cloudflare's API roots
	// (defaults https://gateway.ai.cloudflare.com/v1, https://api.cloudflare.com/client/v4);
	// tests point them at a fake.
	GatewayBase   string
	CloudflareAPI string
}

// EnvFrom reads Env with getenv (os.Getenv, or the Worker's env).
func EnvFrom(getenv func(string) string) Env {
	return Env{AccountID: getenv("CLOUDFLARE_ACCOUNT_ID"), GatewayID: getenv("AI_GATEWAY_ID"),
		GatewayToken: getenv("AI_GATEWAY_AUTH_TOKEN"), APIToken: getenv("CLOUDFLARE_API_TOKEN"),
		OpenAIBaseURL: getenv("OPENAI_BASE_URL"), OpenAIKey: getenv("OPENAI_API_KEY"), OpenAIModel: getenv("OPENAI_MODEL")}
}

// Backends builds every backend from env; one lacking configuration is present with
// Missing set, so a call to it fails naming what to set. The default is openai when
// OPENAI_BASE_URL is set (a developer's machine), else workers-ai.
func Backends(e Env) (def string, list []*Backend) {
	gw := strings.TrimRight(or(e.GatewayBase, "https://gateway.ai.cloudflare.com/v1"), "/")
	cf := strings.TrimRight(or(e.CloudflareAPI, "https://api.cloudflare.com/client/v4"), "/")
	var aig map[string]string
	if e.GatewayToken != "" {
		aig = map[string]string{"cf-aig-authorization": "Bearer " + e.GatewayToken}
	}
	missing := func(pairs ...string) []string {
		var m []string
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i+1] == "" {
				m = append(m, pairs[i])
			}
		}
		return m
	}
	gateway := gw + "/" + e.AccountID + "/" + e.GatewayID

	workers := &Backend{Name: WorkersAI, APIKey: e.APIToken, StripPrefix: "workers-ai/",
		Missing: missing("CLOUDFLARE_ACCOUNT_ID", e.AccountID, "CLOUDFLARE_API_TOKEN", e.APIToken)}
	if e.GatewayID != "" {
		workers.BaseURL, workers.Header = gateway+"/workers-ai/v1", aig
	} else {
		workers.BaseURL = cf + "/accounts/" + e.AccountID + "/ai/v1"
	}
	byok := missing("CLOUDFLARE_ACCOUNT_ID", e.AccountID, "AI_GATEWAY_ID", e.GatewayID, "AI_GATEWAY_AUTH_TOKEN", e.GatewayToken)
	list = []*Backend{
		workers,
		// AI Gateway's unified endpoint takes "<provider>/<model>" as the model.
		{Name: Anthropic, BaseURL: gateway + "/compat", Header: aig, Missing: byok},
		{Name: DeepSeek, BaseURL: gateway + "/compat", Header: aig, JSON: true, Missing: byok},
		{Name: Bedrock, BaseURL: gateway + "/aws-bedrock/bedrock-runtime/{region}/openai/v1", StripPrefix: "bedrock/", JSON: true,
			Missing: missing("CLOUDFLARE_ACCOUNT_ID", e.AccountID, "AI_GATEWAY_ID", e.GatewayID),
			bedrock: &bedrockRoute{defaultRegion: or(e.BedrockRegion, "us-east-1")}},
		{Name: OpenAI, BaseURL: e.OpenAIBaseURL, APIKey: e.OpenAIKey, Model: e.OpenAIModel, StripPrefix: "openai/",
			Missing: missing("OPENAI_BASE_URL", e.OpenAIBaseURL)},
	}
	def = WorkersAI
	if e.OpenAIBaseURL != "" {
		def = OpenAI
	}
	return def, list
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
