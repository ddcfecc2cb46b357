package fakegithub

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// JWT rejections, worded as GitHub words them.
const (
	msgJWTDecode   = "A JSON web token could not be decoded"
	msgJWTIat      = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
	msgJWTExp      = "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
	msgJWTTooFar   = "'Expiration time' claim ('exp') is too far in the future"
	msgBadCreds    = "Bad credentials"
	msgNeedsAuth   = "Requires authentication"
	msgNoAccess    = "Resource not accessible by integration"
	jwtMaxLifetime = 10 * time.Minute
	tokenLifetime  = time.Hour
)

type requestKey struct{}

func withRequest(ctx context.Context, q *request) context.Context {
	return context.WithValue(ctx, requestKey{}, q)
}

// authMode is who may call a route.
type authMode int

const (
	authApp  authMode = iota // App JWT
	authInst                 // installation token
)

// handle registers a route. perm ("checks:write", "contents:read", …) is the
// installation permission the route needs; "" means none beyond access.
// Routes under /repos/{owner}/{repo}/ resolve the repository and refuse (404)
// one the caller's installation does not include.
func (f *Fake) handle(pattern string, mode authMode, perm, doc string, h func(q *request)) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		q := r.Context().Value(requestKey{}).(*request)
		q.r = r
		if !q.authenticate(mode, doc) {
			return
		}
		if owner := r.PathValue("owner"); owner != "" {
			key := strings.ToLower(owner + "/" + r.PathValue("repo"))
			rp := f.repos[key]
			switch {
			case rp == nil:
				q.notFound()
				return
			case q.inst != nil && !q.inst.repos[key]:
				q.notFound()
				return
			case q.app != nil && f.installationOn(q.app.ID, key) == nil:
				q.notFound()
				return
			}
			q.repo = rp
		}
		if perm != "" && q.inst != nil && !q.inst.allows(perm) {
			q.error(http.StatusForbidden, msgNoAccess, doc)
			return
		}
		h(q)
	})
}

func (in *installation) allows(perm string) bool {
	name, level, _ := strings.Cut(perm, ":")
	have := in.permissions[name]
	switch level {
	case "read":
		return have == "read" || have == "write" || have == "admin"
	case "write":
		return have == "write" || have == "admin"
	}
	return false
}

func (f *Fake) installationOn(appID int64, repoKey string) *installation {
	for _, in := range f.installations {
		if in.appID == appID && in.repos[repoKey] {
			return in
		}
	}
	return nil
}

// authenticate checks the Authorization header against what the route
// accepts, spends the caller's rate-limit budget and answers the failures.
func (q *request) authenticate(mode authMode, doc string) bool {
	f := q.f
	scheme, cred, _ := strings.Cut(strings.TrimSpace(q.r.Header.Get("Authorization")), " ")
	cred = strings.TrimSpace(cred)
	if cred == "" || (!strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token")) {
		if !f.rateHeaders(q, "anon") {
			return false
		}
		if scheme != "" {
			q.error(http.StatusUnauthorized, msgBadCreds, docRoot)
		} else {
			q.error(http.StatusUnauthorized, msgNeedsAuth, doc)
		}
		return false
	}
	if strings.Count(cred, ".") == 2 {
		app, msg := f.verifyJWT(cred)
		if app == nil {
			if f.rateHeaders(q, "anon") {
				q.error(http.StatusUnauthorized, msg, docRoot)
			}
			return false
		}
		q.app, q.call.App = app, app.ID
		if !f.rateHeaders(q, fmt.Sprintf("app:%d", app.ID)) {
			return false
		}
		if mode != authApp {
			q.error(http.StatusForbidden, msgNoAccess, doc)
			return false
		}
		return true
	}
	tok := f.tokens[cred]
	if tok == nil || !f.now().Before(tok.expires) {
		if f.rateHeaders(q, "anon") {
			q.error(http.StatusUnauthorized, msgBadCreds, docRoot)
		}
		return false
	}
	q.tok, q.inst, q.call.Installation = tok, f.installations[tok.inst], tok.inst
	if !f.rateHeaders(q, fmt.Sprintf("inst:%d", tok.inst)) {
		return false
	}
	q.w.Header().Set("GitHub-Authentication-Token-Expiration", tok.expires.UTC().Format("2006-01-02 15:04:05 MST"))
	if mode == authApp {
		q.error(http.StatusUnauthorized, msgJWTDecode, doc)
		return false
	}
	return true
}

// verifyJWT checks an App JWT: RS256 signature by the App named in iss,
// integer iat not in the future, integer exp in the future, at most 10
// minutes ahead and at most 10 minutes after iat. It returns the App, or nil
// and GitHub's message.
func (f *Fake) verifyJWT(s string) (*appState, string) {
	parts := strings.Split(s, ".")
	seg := func(i int) []byte {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil
		}
		return b
	}
	var header struct {
		Alg string `json:"alg"`
	}
	if h := seg(0); h == nil || json.Unmarshal(h, &header) != nil || header.Alg != "RS256" {
		return nil, msgJWTDecode
	}
	var claims map[string]json.RawMessage
	if c := seg(1); c == nil || json.Unmarshal(c, &claims) != nil {
		return nil, msgJWTDecode
	}
	app := f.appByIssuer(claims["iss"])
	sig := seg(2)
	if app == nil || sig == nil {
		return nil, msgJWTDecode
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if rsa.VerifyPKCS1v15(app.pub, crypto.SHA256, digest[:], sig) != nil {
		return nil, msgJWTDecode
	}
	now := f.now()
	iat, ok := intClaim(claims["iat"])
	if !ok || time.Unix(iat, 0).After(now) {
		return nil, msgJWTIat
	}
	exp, ok := intClaim(claims["exp"])
	if !ok || !time.Unix(exp, 0).After(now) {
		return nil, msgJWTExp
	}
	if time.Unix(exp, 0).After(now.Add(jwtMaxLifetime)) || time.Duration(exp-iat)*time.Second > jwtMaxLifetime {
		return nil, msgJWTTooFar
	}
	return app, ""
}

func intClaim(raw json.RawMessage) (int64, bool) {
	if raw == nil {
		return 0, false
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	return n, err == nil
}

// appByIssuer finds the App by numeric id (number or numeric string) or by
// client id.
func (f *Fake) appByIssuer(raw json.RawMessage) *appState {
	if raw == nil {
		return nil
	}
	if id, ok := intClaim(raw); ok {
		return f.apps[id]
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		return f.apps[id]
	}
	for _, a := range f.apps {
		if a.ClientID == s {
			return a
		}
	}
	return nil
}

// newToken mints an installation token: ghs_ and 36 alphanumerics.
func (f *Fake) newToken(inst int64) *token {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 36)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	t := &token{value: "ghs_" + string(b), inst: inst, expires: f.now().Add(tokenLifetime).Truncate(time.Second)}
	f.tokens[t.value] = t
	return t
}

// Installation-related routes.
func (f *Fake) appRoutes() {
	const docApps = docRoot + "/apps/apps"
	f.handle("GET /app", authApp, "", docApps+"#get-the-authenticated-app", func(q *request) {
		q.json(http.StatusOK, q.appJSON(q.app))
	})
	f.handle("GET /app/installations", authApp, "", docApps+"#list-installations-for-the-authenticated-app", func(q *request) {
		var items []any
		for _, in := range f.sortedInstallations() {
			if in.appID == q.app.ID {
				items = append(items, q.installationJSON(in))
			}
		}
		q.paginate(items, nil)
	})
	f.handle("GET /app/installations/{id}", authApp, "", docApps+"#get-an-installation-for-the-authenticated-app", func(q *request) {
		in := f.appInstallation(q)
		if in == nil {
			q.notFound()
			return
		}
		q.json(http.StatusOK, q.installationJSON(in))
	})
	f.handle("POST /app/installations/{id}/access_tokens", authApp, "", docApps+"#create-an-installation-access-token-for-an-app", func(q *request) {
		in := f.appInstallation(q)
		if in == nil {
			q.notFound()
			return
		}
		if in.suspended {
			q.error(http.StatusForbidden, "This installation has been suspended", docApps)
			return
		}
		var body struct {
			Repositories []string          `json:"repositories"`
			Permissions  map[string]string `json:"permissions"`
		}
		if !q.decode(&body, docApps) {
			return
		}
		tok := f.newToken(in.id)
		q.json(http.StatusCreated, map[string]any{
			"token":                tok.value,
			"expires_at":           timeJSON(tok.expires),
			"permissions":          in.permissions,
			"repository_selection": "selected",
		})
	})
	f.handle("GET /repos/{owner}/{repo}/installation", authApp, "", docApps+"#get-a-repository-installation-for-the-authenticated-app", func(q *request) {
		q.json(http.StatusOK, q.installationJSON(f.installationOn(q.app.ID, q.repo.key())))
	})
	f.handle("GET /installation/repositories", authInst, "", docRoot+"/apps/installations#list-repositories-accessible-to-the-app-installation", func(q *request) {
		var items []any
		for _, key := range sortedKeys(q.inst.repos) {
			items = append(items, q.repoJSON(f.repos[key]))
		}
		q.paginate(items, func(page []any) any {
			return map[string]any{"total_count": len(items), "repository_selection": "selected", "repositories": page}
		})
	})
}

func (f *Fake) appInstallation(q *request) *installation {
	id, err := strconv.ParseInt(q.r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	in := f.installations[id]
	if in == nil || in.appID != q.app.ID {
		return nil
	}
	return in
}

func (f *Fake) sortedInstallations() []*installation {
	var out []*installation
	for _, in := range f.installations {
		out = append(out, in)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].id < out[j-1].id; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func (q *request) appJSON(a *appState) map[string]any {
	return map[string]any{
		"id": a.ID, "slug": a.Slug, "client_id": a.ClientID, "name": a.Slug,
		"node_id": fmt.Sprintf("A_fake%d", a.ID), "html_url": "https://github.com/apps/" + a.Slug,
		"permissions": DefaultPermissions,
		"events":      []string{"check_run", "check_suite", "deployment_status", "pull_request"},
	}
}

func (q *request) installationJSON(in *installation) map[string]any {
	return map[string]any{
		"id":                   in.id,
		"app_id":               in.appID,
		"account":              map[string]any{"login": in.account, "type": "Organization"},
		"target_type":          "Organization",
		"repository_selection": "selected",
		"access_tokens_url":    q.apiURL(fmt.Sprintf("/app/installations/%d/access_tokens", in.id)),
		"permissions":          in.permissions,
		"suspended_at":         nil,
	}
}

// apiURL is an absolute URL on the fake for a path.
func (q *request) apiURL(path string) string {
	return "http://" + q.r.Host + path
}
