package edge

import (
	"strconv"
	"strings"
)

// Config is the edge's configuration by the Worker's own names, so one table
// documents both platforms (specs/configuration.md).
type Config struct {
	HMACSecret    string // HMAC_SECRET: dispatch signatures and every derived token
	LogLinkSecret string // LOG_LINK_SECRET: optional extra key material for log links
	AdminToken    string // ADMIN_TOKEN: cancel, listing, admin events
	PublicOrigin  string // PUBLIC_ORIGIN: absolute links; else the request's origin
	AdmissionCap  int    // ADMISSION_CAP: slots per pool (default 16)
	Local         bool   // local mode: local repository paths accepted
	BlobEndpoint  string // S3 endpoint the agents use (R2 or the embedded store)
	BlobBucket    string
	WebhookSecret string // GITHUB_WEBHOOK_SECRET: webhook signatures; unset = webhook mode off (503)
	GitHubAPIURL  string // GITHUB_API_URL: REST API root (default https://api.github.com/; a fake in tests)
	// BrowserMode is BROWSER_MODE: "sandbox" (default; browser runs launch chromium in
	// their sandbox) or "remote" (they use /v1/browser/cdp, when a browser is configured).
	BrowserMode string
	// PreviewHostname is SANDBOX_PREVIEW_HOSTNAME: the zone of preview URLs
	// (<port>-<sandbox>-<token>.<hostname>, preview.go); "" means none.
	PreviewHostname string
	// EmailFrom, EmailFromName and EmailAllowedRecipients are EMAIL_FROM,
	// EMAIL_FROM_NAME and EMAIL_ALLOWED_RECIPIENTS (comma-separated): completion emails
	// (notify.go) go out only with a sender, and only to listed recipients.
	EmailFrom              string
	EmailFromName          string
	EmailAllowedRecipients []string
	// InstanceTypes is SANDBOX_INSTANCE_TYPES ("lean=standard-2,browser=standard-3"):
	// the Containers instance type of each pool, for costs (cost.go); New checks it.
	InstanceTypes string
	// LogQuotaMB is LOG_QUOTA_MB: an execution's log budget in MiB across its attempts
	// (0: the agent's default, 64 MiB); past it output is truncated with a marker.
	LogQuotaMB int
}

// ConfigFromEnv reads a Config with getenv (os.Getenv locally, the Worker's env on
// Cloudflare).
func ConfigFromEnv(getenv func(string) string) Config {
	return Config{
		HMACSecret:             getenv("HMAC_SECRET"),
		LogLinkSecret:          getenv("LOG_LINK_SECRET"),
		AdminToken:             getenv("ADMIN_TOKEN"),
		PublicOrigin:           strings.TrimRight(getenv("PUBLIC_ORIGIN"), "/"),
		AdmissionCap:           ParseCap(getenv("ADMISSION_CAP")),
		WebhookSecret:          getenv("GITHUB_WEBHOOK_SECRET"),
		GitHubAPIURL:           getenv("GITHUB_API_URL"),
		BrowserMode:            strings.TrimSpace(getenv("BROWSER_MODE")),
		PreviewHostname:        strings.Trim(strings.TrimSpace(getenv("SANDBOX_PREVIEW_HOSTNAME")), "."),
		EmailFrom:              strings.TrimSpace(getenv("EMAIL_FROM")),
		EmailFromName:          strings.TrimSpace(getenv("EMAIL_FROM_NAME")),
		EmailAllowedRecipients: SplitList(getenv("EMAIL_ALLOWED_RECIPIENTS")),
		InstanceTypes:          getenv("SANDBOX_INSTANCE_TYPES"),
		LogQuotaMB:             positive(getenv("LOG_QUOTA_MB")),
	}
}

// ParseCap reads ADMISSION_CAP: a positive integer, else the default 16 (contract §6.1).
func ParseCap(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n <= 0 {
		return 16
	}
	return n
}

// SplitList reads a comma- or space-separated list, dropping empty items.
func SplitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// positive reads a positive integer; anything else is 0 (the default).
func positive(s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n <= 0 {
		return 0
	}
	return n
}
