package fakegithub

import (
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// Fault is a failure the fake answers instead of handling a request, before
// authentication: the request has no effect. Build one with the functions
// below.
type Fault struct {
	status     int
	message    string
	doc        string
	retryAfter time.Duration // sent as Retry-After when > 0
	resetIn    time.Duration // primary rate limit: x-ratelimit-remaining 0, reset now+resetIn
}

// ServerError is a 5xx, e.g. ServerError(502).
func ServerError(status int) Fault {
	msg := http.StatusText(status)
	if msg == "" {
		msg = "Server Error"
	}
	return Fault{status: status, message: msg}
}

// ServerErrorRetryAfter is a 5xx (e.g. 503) carrying Retry-After.
func ServerErrorRetryAfter(status int, retryAfter time.Duration) Fault {
	f := ServerError(status)
	f.retryAfter = retryAfter
	return f
}

// TooManyRequests is a 429 with Retry-After (omitted when zero).
func TooManyRequests(retryAfter time.Duration) Fault {
	return Fault{status: http.StatusTooManyRequests, message: "Too Many Requests", retryAfter: retryAfter}
}

// SecondaryRateLimit is GitHub's 403 for the secondary (abuse) rate limit,
// with Retry-After when retryAfter > 0.
func SecondaryRateLimit(retryAfter time.Duration) Fault {
	return Fault{
		status:     http.StatusForbidden,
		message:    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID FAKE.",
		doc:        docRoot + "/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
		retryAfter: retryAfter,
	}
}

// PrimaryRateLimit is GitHub's 403 with x-ratelimit-remaining: 0 and
// x-ratelimit-reset resetIn from now.
func PrimaryRateLimit(resetIn time.Duration) Fault {
	return Fault{
		status:  http.StatusForbidden,
		message: "API rate limit exceeded for installation.",
		doc:     docRoot + "/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
		resetIn: resetIn,
	}
}

// BadCredentials is a 401 "Bad credentials", as for a revoked token.
func BadCredentials() Fault {
	return Fault{status: http.StatusUnauthorized, message: msgBadCreds, doc: docRoot}
}

type queuedFault struct {
	match pattern
	left  int
	fault Fault
}

// FailNext makes the next n requests matching pattern fail with fault.
// pattern is "[METHOD ]/path": the path is matched with path.Match (so
// "/repos/o/r/check-runs/*" matches one segment) or, ending in "/**", as a
// prefix; without a method any method matches. Faults queue in order.
func (f *Fake) FailNext(n int, pattern string, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &queuedFault{match: parsePattern(pattern), left: n, fault: fault})
}

func (f *Fake) takeFault(method, p string) *Fault {
	for i, qf := range f.faults {
		if qf.left > 0 && qf.match.match(method, p) {
			qf.left--
			fault := qf.fault
			if qf.left == 0 {
				f.faults = append(f.faults[:i], f.faults[i+1:]...)
			}
			return &fault
		}
	}
	return nil
}

// write answers the fault. It spends no rate-limit budget; its headers
// show a fresh window unless the fault is the primary rate limit itself.
func (fl *Fault) write(q *request) {
	h := q.w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(q.f.rateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(q.f.rateLimit))
	h.Set("X-RateLimit-Used", "0")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(q.f.now().Add(time.Hour).Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	if fl.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((fl.retryAfter+time.Second-1)/time.Second)))
	}
	if fl.resetIn > 0 {
		h.Set("X-RateLimit-Remaining", "0")
		h.Set("X-RateLimit-Used", strconv.Itoa(q.f.rateLimit))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(q.f.now().Add(fl.resetIn).Unix(), 10))
	}
	q.error(fl.status, fl.message, fl.doc)
}

type pattern struct {
	method, path string
}

func parsePattern(s string) pattern {
	if m, p, ok := strings.Cut(strings.TrimSpace(s), " "); ok {
		return pattern{method: strings.ToUpper(m), path: strings.TrimSpace(p)}
	}
	return pattern{path: strings.TrimSpace(s)}
}

func (pt pattern) match(method, p string) bool {
	if pt.method != "" && pt.method != method {
		return false
	}
	if prefix, ok := strings.CutSuffix(pt.path, "/**"); ok {
		return p == prefix || strings.HasPrefix(p, prefix+"/")
	}
	ok, _ := path.Match(pt.path, p)
	return ok
}

// routes registers every endpoint the fake serves.
func (f *Fake) routes() {
	f.appRoutes()
	f.gitRoutes()
	f.checkRoutes()
	f.pullRoutes()
	f.issueRoutes()
	f.manifestRoutes()
	f.handle("GET /rate_limit", authInst, "", docRoot+"/rate-limit", func(q *request) {
		h := q.w.Header()
		core := map[string]any{}
		for _, k := range []string{"Limit", "Remaining", "Used", "Reset"} {
			n, _ := strconv.ParseInt(h.Get("X-RateLimit-"+k), 10, 64)
			core[strings.ToLower(k)] = n
		}
		q.json(http.StatusOK, map[string]any{"resources": map[string]any{"core": core}, "rate": core})
	})
}
