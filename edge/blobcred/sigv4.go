package blobcred

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Error is a refusal in S3's terms: HTTP status, S3 error code, message.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func denied(format string, a ...any) *Error {
	return &Error{http.StatusForbidden, "AccessDenied", fmt.Sprintf(format, a...)}
}

func invalid(format string, a ...any) *Error {
	return &Error{http.StatusBadRequest, "InvalidArgument", fmt.Sprintf(format, a...)}
}

func malformedAuth(format string, a ...any) *Error {
	return &Error{http.StatusBadRequest, "AuthorizationHeaderMalformed", fmt.Sprintf(format, a...)}
}

// Principal is who signed a request.
type Principal struct {
	AccessKeyID string
	// Admin is the edge's own full-access credential.
	Admin bool
	// Claims are set for scoped credentials.
	Claims Claims
}

// Authenticator verifies AWS Signature Version 4 on S3 requests, in the Authorization
// header form and the presigned query form, for the admin credential and for scoped
// credentials minted with Root.
type Authenticator struct {
	// Root derives scoped credentials (see Mint); nil accepts none.
	Root []byte
	// AdminKeyID and AdminSecret are the full-access credential; an empty id accepts none.
	AdminKeyID  string
	AdminSecret string
	// MaxSkew bounds the clock difference for signed requests; 0 means 15 minutes.
	MaxSkew time.Duration
}

const (
	sigAlgorithm    = "AWS4-HMAC-SHA256"
	amzDateLayout   = "20060102T150405Z"
	unsignedPayload = "UNSIGNED-PAYLOAD"
	maxPresignTTL   = 7 * 24 * time.Hour
)

// signed is what a request claims about its own signature.
type signed struct {
	keyID, scopeDate, region, service string
	amzDate                           string
	at                                time.Time
	signedHeaders                     []string
	signedHeadersRaw                  string
	signature                         string
	payloadHash                       string
	presigned                         bool
	expires                           time.Duration
}

// Authenticate verifies r's signature at now and returns who signed it. When the payload
// hash is a SHA-256 (not UNSIGNED-PAYLOAD), r.Body is replaced by a reader that fails with
// an *Error (XAmzContentSHA256Mismatch) at end of body if the bytes do not match: the
// consumer must treat a read error as "discard what was read". Streaming (aws-chunked)
// payloads are refused.
func (a *Authenticator) Authenticate(r *http.Request, now time.Time) (Principal, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return Principal{}, invalid("query string: %v", err)
	}
	authz := r.Header.Get("Authorization")
	presigned := q.Has("X-Amz-Algorithm") || q.Has("X-Amz-Credential") || q.Has("X-Amz-Signature")
	var s signed
	switch {
	case authz != "" && presigned:
		return Principal{}, invalid("only one auth mechanism allowed")
	case authz != "":
		s, err = parseHeaderAuth(r, authz)
	case presigned:
		s, err = parseQueryAuth(q)
	default:
		return Principal{}, denied("anonymous access is not allowed")
	}
	if err != nil {
		return Principal{}, err
	}
	if err := a.checkTime(s, now); err != nil {
		return Principal{}, err
	}
	p, secret, err := a.lookup(s.keyID, now)
	if err != nil {
		return Principal{}, err
	}
	for k := range r.Header {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-amz-") && !slices.Contains(s.signedHeaders, lk) {
			return Principal{}, denied("header %s is not signed", lk)
		}
	}
	creq := canonicalRequest(r, q, s)
	sum := sha256.Sum256([]byte(creq))
	scope := s.scopeDate + "/" + s.region + "/" + s.service + "/aws4_request"
	sts := sigAlgorithm + "\n" + s.amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := hmacSHA256([]byte("AWS4"+secret), s.scopeDate)
	key = hmacSHA256(key, s.region)
	key = hmacSHA256(key, s.service)
	key = hmacSHA256(key, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(key, sts))
	if !hmac.Equal([]byte(want), []byte(s.signature)) {
		return Principal{}, &Error{http.StatusForbidden, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided."}
	}
	if s.payloadHash != unsignedPayload && r.Body != nil && r.Body != http.NoBody {
		want, _ := hex.DecodeString(s.payloadHash)
		r.Body = &checkedBody{rc: r.Body, h: sha256.New(), want: want}
	}
	return p, nil
}

func (a *Authenticator) checkTime(s signed, now time.Time) error {
	skew := a.MaxSkew
	if skew == 0 {
		skew = 15 * time.Minute
	}
	if s.presigned {
		if s.at.After(now.Add(skew)) {
			return denied("request is not valid until %s", s.amzDate)
		}
		if !now.Before(s.at.Add(s.expires)) {
			return denied("Request has expired")
		}
		return nil
	}
	if d := now.Sub(s.at); d > skew || d < -skew {
		return &Error{http.StatusForbidden, "RequestTimeTooSkewed",
			"The difference between the request time and the server's time is too large."}
	}
	return nil
}

func (a *Authenticator) lookup(keyID string, now time.Time) (Principal, string, error) {
	if a.AdminKeyID != "" && hmac.Equal([]byte(keyID), []byte(a.AdminKeyID)) {
		return Principal{AccessKeyID: keyID, Admin: true}, a.AdminSecret, nil
	}
	if a.Root == nil {
		return Principal{}, "", unknownKey()
	}
	c, secret, err := Verify(a.Root, keyID, now)
	switch {
	case errors.Is(err, ErrExpired):
		return Principal{}, "", denied("access key expired at %s", c.Expires.Format(time.RFC3339))
	case err != nil:
		return Principal{}, "", unknownKey()
	}
	return Principal{AccessKeyID: keyID, Claims: c}, secret, nil
}

func unknownKey() *Error {
	return &Error{http.StatusForbidden, "InvalidAccessKeyId",
		"The AWS Access Key Id you provided does not exist in our records."}
}

func parseHeaderAuth(r *http.Request, authz string) (signed, error) {
	rest, ok := strings.CutPrefix(authz, sigAlgorithm+" ")
	if !ok {
		return signed{}, malformedAuth("unsupported authorization type, want %s", sigAlgorithm)
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if _, dup := fields[k]; !ok || dup {
			return signed{}, malformedAuth("authorization header field %q", f)
		}
		fields[k] = v
	}
	if len(fields) != 3 {
		return signed{}, malformedAuth("want Credential, SignedHeaders and Signature")
	}
	s, err := parseCommon(fields["Credential"], r.Header.Get("X-Amz-Date"), fields["SignedHeaders"], fields["Signature"])
	if err != nil {
		return signed{}, err
	}
	for _, h := range []string{"x-amz-date", "x-amz-content-sha256"} {
		if !slices.Contains(s.signedHeaders, h) {
			return signed{}, denied("header %s must be signed", h)
		}
	}
	s.payloadHash, err = checkPayloadHash(r.Header.Get("X-Amz-Content-Sha256"))
	return s, err
}

func parseQueryAuth(q url.Values) (signed, error) {
	for _, k := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"} {
		if len(q[k]) != 1 {
			return signed{}, denied("query-string authentication requires exactly one %s", k)
		}
	}
	if q.Get("X-Amz-Algorithm") != sigAlgorithm {
		return signed{}, invalid("X-Amz-Algorithm %q, want %s", q.Get("X-Amz-Algorithm"), sigAlgorithm)
	}
	s, err := parseCommon(q.Get("X-Amz-Credential"), q.Get("X-Amz-Date"), q.Get("X-Amz-SignedHeaders"), q.Get("X-Amz-Signature"))
	if err != nil {
		return signed{}, err
	}
	secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > maxPresignTTL {
		return signed{}, invalid("X-Amz-Expires must be 1..604800 seconds")
	}
	s.presigned, s.expires = true, time.Duration(secs)*time.Second
	s.payloadHash = unsignedPayload
	if v, ok := q["X-Amz-Content-Sha256"]; ok {
		if len(v) != 1 {
			return signed{}, invalid("repeated X-Amz-Content-Sha256")
		}
		s.payloadHash, err = checkPayloadHash(v[0])
	}
	return s, err
}

func parseCommon(credential, amzDate, signedHeaders, signature string) (signed, error) {
	var s signed
	parts := strings.Split(credential, "/")
	if len(parts) != 5 || parts[0] == "" || parts[2] == "" || parts[4] != "aws4_request" {
		return s, malformedAuth("credential %q: want <key>/<date>/<region>/s3/aws4_request", credential)
	}
	if parts[3] != "s3" {
		return s, malformedAuth("credential service %q, want s3", parts[3])
	}
	s.keyID, s.scopeDate, s.region, s.service = parts[0], parts[1], parts[2], parts[3]
	at, err := time.Parse(amzDateLayout, amzDate)
	if err != nil {
		return s, denied("missing or malformed X-Amz-Date")
	}
	if s.scopeDate != amzDate[:8] {
		return s, malformedAuth("credential date %q does not match X-Amz-Date %q", s.scopeDate, amzDate)
	}
	s.amzDate, s.at = amzDate, at
	s.signedHeadersRaw = signedHeaders
	s.signedHeaders = strings.Split(signedHeaders, ";")
	for i, h := range s.signedHeaders {
		if h == "" || h != strings.ToLower(h) || i > 0 && s.signedHeaders[i-1] >= h {
			return s, malformedAuth("SignedHeaders %q: want sorted, unique, lower-case names", signedHeaders)
		}
	}
	if !slices.Contains(s.signedHeaders, "host") {
		return s, denied("header host must be signed")
	}
	if len(signature) != 64 || strings.ToLower(signature) != signature {
		return s, malformedAuth("signature: want 64 lower-case hex digits")
	}
	if _, err := hex.DecodeString(signature); err != nil {
		return s, malformedAuth("signature: want 64 lower-case hex digits")
	}
	s.signature = signature
	return s, nil
}

func checkPayloadHash(v string) (string, error) {
	switch {
	case v == unsignedPayload:
		return v, nil
	case strings.HasPrefix(v, "STREAMING-"):
		return "", &Error{http.StatusNotImplemented, "NotImplemented",
			"streaming (aws-chunked) payloads are not supported; send a plain body with Content-Length"}
	case len(v) == 64 && strings.ToLower(v) == v:
		if _, err := hex.DecodeString(v); err == nil {
			return v, nil
		}
	case v == "":
		return "", invalid("missing x-amz-content-sha256")
	}
	return "", invalid("x-amz-content-sha256 %q: want a lower-case hex SHA-256 or UNSIGNED-PAYLOAD", v)
}

// canonicalRequest follows the SigV4 rules for S3: the path as sent (no normalisation,
// no double encoding), the query re-encoded and sorted, the signed headers with trimmed
// values.
func canonicalRequest(r *http.Request, q url.Values, s signed) string {
	var b strings.Builder
	b.WriteString(r.Method)
	b.WriteByte('\n')
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	b.WriteString(path)
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(q, s.presigned))
	b.WriteByte('\n')
	for _, h := range s.signedHeaders {
		b.WriteString(h)
		b.WriteByte(':')
		b.WriteString(headerValue(r, h))
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.WriteString(s.signedHeadersRaw)
	b.WriteByte('\n')
	b.WriteString(s.payloadHash)
	return b.String()
}

func canonicalQuery(q url.Values, presigned bool) string {
	type pair struct{ k, v string }
	pairs := make([]pair, 0, len(q))
	for k, vs := range q {
		if presigned && k == "X-Amz-Signature" {
			continue
		}
		for _, v := range vs {
			pairs = append(pairs, pair{uriEncode(k), uriEncode(v)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.k, b.k); c != 0 {
			return c
		}
		return strings.Compare(a.v, b.v)
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

func headerValue(r *http.Request, name string) string {
	var vs []string
	switch name {
	case "host":
		vs = []string{r.Host}
	default:
		vs = r.Header.Values(name)
		if len(vs) == 0 && name == "content-length" && r.ContentLength >= 0 {
			vs = []string{strconv.FormatInt(r.ContentLength, 10)}
		}
	}
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(out, ",")
}

// uriEncode is SigV4's UriEncode: every byte except A-Z a-z 0-9 - _ . ~ as %XX.
func uriEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// checkedBody hashes the body as it is read and fails at EOF on a mismatch.
type checkedBody struct {
	rc   io.ReadCloser
	h    hash.Hash
	want []byte
}

// ErrPayloadMismatch is the error a verified body returns at EOF when its SHA-256 differs
// from the signed x-amz-content-sha256.
var ErrPayloadMismatch = &Error{http.StatusBadRequest, "XAmzContentSHA256Mismatch",
	"The provided 'x-amz-content-sha256' header does not match what was computed."}

func (c *checkedBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.h.Write(p[:n])
	if err == io.EOF && !hmac.Equal(c.h.Sum(nil), c.want) {
		return n, ErrPayloadMismatch
	}
	return n, err
}

func (c *checkedBody) Close() error { return c.rc.Close() }
