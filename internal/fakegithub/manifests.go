package fakegithub

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The GitHub App manifest flow. On github.com the operator's browser POSTs the
// manifest to /settings/apps/new (a web page, not the API); GitHub creates the App and
// redirects to the manifest's redirect_url with ?code=…&state=…. The API side is
// POST /app-manifests/{code}/conversions, unauthenticated, once per code, within an
// hour. CreateAppFromManifest stands in for the web step.

const manifestCodeLifetime = time.Hour

type manifestCode struct {
	manifest Manifest
	owner    string
	expires  time.Time
	used     bool
	app      *ManifestApp // after conversion
}

// Manifest is the App manifest GitHub reads (the fields it validates here).
type Manifest struct {
	Name           string `json:"name"`
	URL            string `json:"url"`
	Description    string `json:"description"`
	HookAttributes *struct {
		URL    string `json:"url"`
		Active *bool  `json:"active"`
	} `json:"hook_attributes"`
	RedirectURL        string            `json:"redirect_url"`
	CallbackURLs       []string          `json:"callback_urls"`
	SetupURL           string            `json:"setup_url"`
	Public             bool              `json:"public"`
	DefaultEvents      []string          `json:"default_events"`
	DefaultPermissions map[string]string `json:"default_permissions"`
}

// ManifestApp is an App created from a manifest: what the conversion returned.
type ManifestApp struct {
	App
	Owner         string
	HTMLURL       string
	WebhookURL    string
	WebhookSecret string
	ClientSecret  string
	Permissions   map[string]string
	Events        []string
	RedirectURL   string
}

// permissionLevels are the repository permissions a manifest may ask for, with the
// levels each accepts.
var permissionLevels = map[string][]string{
	"actions": {"read", "write"}, "administration": {"read", "write"}, "checks": {"read", "write"},
	"contents": {"read", "write"}, "deployments": {"read", "write"}, "environments": {"read", "write"},
	"issues": {"read", "write"}, "metadata": {"read"}, "packages": {"read", "write"}, "pages": {"read", "write"},
	"pull_requests": {"read", "write"}, "repository_hooks": {"read", "write"}, "secrets": {"read", "write"},
	"security_events": {"read", "write"}, "statuses": {"read", "write"}, "workflows": {"write"},
	"members": {"read", "write"}, "organization_administration": {"read", "write"},
}

// eventPermission is the permission a subscribable event needs (GitHub refuses a
// default event whose permission the manifest does not grant).
var eventPermission = map[string]string{
	"check_run": "checks", "check_suite": "checks", "deployment": "deployments", "deployment_status": "deployments",
	"pull_request": "pull_requests", "pull_request_review": "pull_requests", "pull_request_review_comment": "pull_requests",
	"push": "contents", "create": "contents", "delete": "contents", "release": "contents", "commit_comment": "contents",
	"issues": "issues", "issue_comment": "issues", "label": "issues", "milestone": "issues",
	"status": "statuses", "workflow_run": "actions", "workflow_job": "actions", "repository": "metadata",
	"public": "metadata", "member": "metadata", "star": "metadata", "watch": "metadata", "fork": "contents",
}

var appNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ._()-]{0,33}$`)

// CreateAppFromManifest does what github.com does with a manifest form posted for owner
// ("" = a personal account, login "octocat"): it validates the manifest and returns the
// one-time code GitHub would append to redirect_url. The App itself is created by the
// conversion.
func (f *Fake) CreateAppFromManifest(manifest []byte, owner string) (string, error) {
	var m Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return "", fmt.Errorf("manifest is not valid JSON: %w", err)
	}
	if err := validateManifest(m); err != nil {
		return "", err
	}
	if owner == "" {
		owner = "octocat"
	}
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	code := hex.EncodeToString(b)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.manifests[code] = &manifestCode{manifest: m, owner: owner, expires: f.now().Add(manifestCodeLifetime)}
	return code, nil
}

func validateManifest(m Manifest) error {
	absolute := func(field, s string) error {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("%s %q is not an absolute http(s) URL", field, s)
		}
		return nil
	}
	if !appNamePattern.MatchString(m.Name) {
		return fmt.Errorf("name %q is not a valid App name (at most 34 characters)", m.Name)
	}
	if err := absolute("url", m.URL); err != nil {
		return err
	}
	if m.HookAttributes == nil || m.HookAttributes.URL == "" {
		if len(m.DefaultEvents) > 0 {
			return fmt.Errorf("default_events need hook_attributes.url")
		}
	} else if err := absolute("hook_attributes.url", m.HookAttributes.URL); err != nil {
		return err
	}
	if m.RedirectURL != "" {
		if err := absolute("redirect_url", m.RedirectURL); err != nil {
			return err
		}
	}
	if m.DefaultPermissions["metadata"] == "" && len(m.DefaultPermissions) > 0 {
		return fmt.Errorf("default_permissions must include metadata: read")
	}
	for p, level := range m.DefaultPermissions {
		levels, ok := permissionLevels[p]
		if !ok {
			return fmt.Errorf("default_permissions: unknown permission %q", p)
		}
		if !contains(levels, level) {
			return fmt.Errorf("default_permissions: %s cannot be %q (one of %v)", p, level, levels)
		}
	}
	for _, e := range m.DefaultEvents {
		need, ok := eventPermission[e]
		if !ok {
			return fmt.Errorf("default_events: %q is not a subscribable event", e)
		}
		if m.DefaultPermissions[need] == "" {
			return fmt.Errorf("default_events: %s needs the %s permission", e, need)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ManifestApps returns the Apps created through manifest conversions, in creation order.
func (f *Fake) ManifestApps() []ManifestApp {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []ManifestApp
	for _, mc := range f.manifests {
		if mc.app != nil {
			out = append(out, *mc.app)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *Fake) manifestRoutes() {
	f.mux.HandleFunc("POST /app-manifests/{code}/conversions", func(w http.ResponseWriter, r *http.Request) {
		q := r.Context().Value(requestKey{}).(*request)
		q.r = r
		if !f.rateHeaders(q, "anon") {
			return
		}
		mc := f.manifests[r.PathValue("code")]
		if mc == nil || mc.used || !f.now().Before(mc.expires) {
			q.notFound()
			return
		}
		mc.used = true
		a := f.addAppLocked()
		m := mc.manifest
		name := m.Name
		secret := make([]byte, 20)
		_, _ = rand.Read(secret)
		clientSecret := make([]byte, 20)
		_, _ = rand.Read(clientSecret)
		ma := &ManifestApp{App: a, Owner: mc.owner, HTMLURL: "https://github.com/apps/" + a.Slug,
			WebhookSecret: hex.EncodeToString(secret), ClientSecret: hex.EncodeToString(clientSecret),
			Permissions: m.DefaultPermissions, Events: m.DefaultEvents, RedirectURL: m.RedirectURL}
		if m.HookAttributes != nil {
			ma.WebhookURL = m.HookAttributes.URL
		}
		mc.app = ma
		ownerType := "User"
		if mc.owner != "octocat" {
			ownerType = "Organization"
		}
		q.json(http.StatusCreated, map[string]any{
			"id": a.ID, "slug": a.Slug, "node_id": fmt.Sprintf("A_fake%d", a.ID),
			"owner":       map[string]any{"login": mc.owner, "id": 1, "type": ownerType},
			"name":        name,
			"description": m.Description, "external_url": m.URL, "html_url": ma.HTMLURL,
			"created_at": timeJSON(f.now()), "updated_at": timeJSON(f.now()),
			"permissions": m.DefaultPermissions, "events": m.DefaultEvents,
			"client_id": a.ClientID, "client_secret": ma.ClientSecret, "webhook_secret": ma.WebhookSecret,
			"pem": strings.TrimSpace(string(a.PrivateKeyPEM)) + "\n",
		})
	})
}
