package github

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	gh "github.com/google/go-github/v62/github"
)

// Reason says what kind of failure an *APIError is, which is what a caller
// decides on: wait and retry later, fix credentials, or give up.
type Reason string

const (
	// ReasonRateLimited: 429, or 403 with x-ratelimit-remaining: 0 or a
	// secondary (abuse) rate-limit message. RetryAfter says when to come back.
	ReasonRateLimited Reason = "rate-limited"
	// ReasonUnauthorized: 401 (bad or expired JWT or token, unknown App).
	ReasonUnauthorized Reason = "unauthorized"
	// ReasonTransient: 5xx or no response at all (connection failed).
	ReasonTransient Reason = "transient"
	// ReasonOther: every other failure (404, 422, other 4xx, bad response
	// body). Retrying will not help.
	ReasonOther Reason = "other"
)

// APIError is a failed GitHub call after the client's own retries.
type APIError struct {
	Method, Path string // the request, e.g. PATCH /repos/o/r/check-runs/7
	Status       int    // HTTP status; 0 when no response arrived
	Reason       Reason
	// RetryAfter is how long GitHub asked the client to wait (Retry-After or
	// x-ratelimit-reset), or the backoff the client would have slept next.
	// Zero when retrying will not help.
	RetryAfter time.Duration
	Message    string // GitHub's "message", if any
	Err        error  // the underlying error
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "github: %s %s: ", e.Method, e.Path)
	if e.Status != 0 {
		fmt.Fprintf(&b, "%d ", e.Status)
	}
	b.WriteString(string(e.Reason))
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	} else if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *APIError) Unwrap() error { return e.Err }

// IsStatus reports whether err is an *APIError with the given HTTP status.
func IsStatus(err error, status int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == status
}

// classify turns what one attempt saw into an *APIError, including how long
// GitHub asked us to wait.
func (c *Client) classify(ex *exchange, err error) *APIError {
	ae := &APIError{Method: ex.method, Path: ex.path, Status: ex.status, Err: err, Reason: ReasonOther}
	var docURL string
	var er *gh.ErrorResponse
	var rl *gh.RateLimitError
	var ab *gh.AbuseRateLimitError
	switch {
	case errors.As(err, &er):
		ae.Message, docURL = er.Message, er.DocumentationURL
	case errors.As(err, &rl):
		ae.Message = rl.Message
	case errors.As(err, &ab):
		ae.Message = ab.Message
	}
	h := ex.header
	if h == nil {
		h = http.Header{}
	}
	msg := strings.ToLower(ae.Message)
	switch s := ex.status; {
	case s == 0:
		if ex.method != "" { // the request was sent but nothing came back
			ae.Reason = ReasonTransient
		}
	case s == http.StatusTooManyRequests,
		s == http.StatusForbidden && h.Get("X-RateLimit-Remaining") == "0",
		s == http.StatusForbidden && (strings.Contains(msg, "secondary rate limit") ||
			strings.Contains(msg, "abuse") || strings.Contains(docURL, "secondary-rate-limits")):
		ae.Reason = ReasonRateLimited
		if d, ok := c.serverWait(h); ok {
			ae.RetryAfter = d
		} else {
			ae.RetryAfter = time.Minute // GitHub: "wait at least one minute"
		}
	case s == http.StatusUnauthorized:
		ae.Reason = ReasonUnauthorized
	case s >= 500:
		ae.Reason = ReasonTransient
		if d, ok := c.serverWait(h); ok {
			ae.RetryAfter = d
		}
	}
	return ae
}

// serverWait reads Retry-After (seconds or HTTP date), then an exhausted
// x-ratelimit-remaining with x-ratelimit-reset (epoch seconds).
func (c *Client) serverWait(h http.Header) (time.Duration, bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseInt(v, 10, 64); err == nil && secs >= 0 {
			return time.Duration(secs) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(c.now()), 0), true
		}
	}
	if h.Get("X-RateLimit-Remaining") == "0" {
		if reset, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
			return max(time.Unix(reset, 0).Sub(c.now()), 0), true
		}
	}
	return 0, false
}

// backoff is the wait before retry number n (1-based) when GitHub named none:
// 0.5 s doubling to at most 8 s, half of it jittered.
func backoff(n int) time.Duration {
	d := 500 * time.Millisecond << min(n-1, 4)
	return d/2 + rand.N(d/2+1)
}

// call runs op with the right credentials (App JWT when inst is 0, else the
// installation's token) and retries rate limits and transient failures:
// bounded attempts, never sleeping longer than MaxWait at once nor past the
// context's deadline. A 401 with an installation token drops the cached token
// and tries once more with a fresh one.
func (c *Client) call(ctx context.Context, inst int64, op func(g *gh.Client) error) error {
	refreshed, forceMint := false, false
	for attempt := 1; ; attempt++ {
		authorization, err := c.authorization(ctx, inst, forceMint)
		if err != nil {
			return err
		}
		forceMint = false
		ex := &exchange{}
		err = op(c.api(authorization, ex))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("github: %s %s: %w", ex.method, ex.path, ctx.Err())
		}
		ae := c.classify(ex, err)
		if ae.Reason == ReasonUnauthorized && inst != 0 && !refreshed {
			c.log.Warn("github: installation token refused, minting a new one", "installation", inst, "path", ae.Path)
			refreshed, forceMint = true, true
			attempt-- // this try does not count against MaxAttempts
			continue
		}
		if ae.Reason != ReasonRateLimited && ae.Reason != ReasonTransient {
			return ae
		}
		wait := ae.RetryAfter
		if wait == 0 {
			wait = backoff(attempt)
		}
		ae.RetryAfter = wait
		if attempt >= c.maxAttempts || wait > c.maxWait {
			return ae
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return ae
		}
		c.log.Debug("github: retrying", "method", ae.Method, "path", ae.Path, "status", ae.Status,
			"reason", string(ae.Reason), "wait", wait, "attempt", attempt)
		if err := c.sleep(ctx, wait); err != nil {
			return fmt.Errorf("github: %s %s: waiting to retry: %w", ae.Method, ae.Path, err)
		}
	}
}
