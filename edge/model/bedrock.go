package model

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Bedrock without a long-lived AWS key: the edge signs an OIDC token (audience
// sts.amazonaws.com, subject "<run>:<execution>"), trades it at STS
// (AssumeRoleWithWebIdentity, an unsigned call) for short-lived credentials, and signs
// each request with them (SigV4, service "bedrock") as if it went to Bedrock itself;
// AI Gateway forwards the signed request unchanged. The signer is ours (the Worker may
// not link aws-sdk-go-v2); the tests hold it to aws-sdk-go-v2's.

// TokenSigner signs OIDC tokens (the edge's issuer).
type TokenSigner interface {
	Sign(audience, subject string, ttl time.Duration, now time.Time) (string, error)
}

// Credentials are temporary AWS credentials.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expires                                    time.Time
}

// bedrockRoute is how a bedrock backend reaches AWS.
type bedrockRoute struct {
	defaultRegion string
}

// stsClient assumes roles and caches the credentials until five minutes before they
// expire.
type stsClient struct {
	signer   TokenSigner
	endpoint func(region string) string // STS URL for a region (tests point it at a fake)
	mu       sync.Mutex
	cache    map[string]Credentials
}

// WithBedrock lets the gateway reach Bedrock through the edge's OIDC issuer;
// stsEndpoint "" means AWS's (global for us-east-1, regional otherwise).
func (g *Gateway) WithBedrock(signer TokenSigner, stsEndpoint string) *Gateway {
	ep := func(region string) string {
		if region == "us-east-1" {
			return "https://sts.amazonaws.com/"
		}
		return "https://sts." + region + ".amazonaws.com/"
	}
	if stsEndpoint != "" {
		ep = func(string) string { return stsEndpoint }
	}
	g.sts = &stsClient{signer: signer, endpoint: ep, cache: map[string]Credentials{}}
	return g
}

func (g *Gateway) bedrockCreds(ctx context.Context, b *Backend, r Request) (Credentials, error) {
	if r.AWS == nil || r.AWS.RoleArn == "" {
		return Credentials{}, &dsl.BackendUnconfigured{Backend: b.Name, Missing: []string{"roleArn"}}
	}
	if g.sts == nil || g.sts.signer == nil {
		return Credentials{}, &dsl.BackendUnconfigured{Backend: b.Name, Missing: []string{"OIDC_ISSUER_URL", "OIDC_SIGNING_JWK"}}
	}
	subject := r.Subject
	if subject == "" {
		subject = "flare-dispatch:model"
	}
	session := r.AWS.Session
	if session == "" {
		session = "flare-dispatch"
	}
	return g.sts.assume(ctx, g.doer, r.AWS.RoleArn, g.region(b, r), session, subject, g.Now())
}

func (g *Gateway) region(b *Backend, r Request) string {
	if r.AWS != nil && r.AWS.Region != "" {
		return r.AWS.Region
	}
	if b.bedrock != nil && b.bedrock.defaultRegion != "" {
		return b.bedrock.defaultRegion
	}
	return "us-east-1"
}

func (s *stsClient) assume(ctx context.Context, doer Doer, roleArn, region, session, subject string, now time.Time) (Credentials, error) {
	key := roleArn + "|" + region + "|" + session + "|" + subject
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && now.Add(5*time.Minute).Before(c.Expires) {
		return c, nil
	}
	tok, err := s.signer.Sign("sts.amazonaws.com", subject, 15*time.Minute, now)
	if err != nil {
		return Credentials{}, &dsl.OidcSigningFailed{Reason: err.Error()}
	}
	form := url.Values{"Action": {"AssumeRoleWithWebIdentity"}, "Version": {"2011-06-15"}, "RoleArn": {roleArn},
		"RoleSessionName": {session}, "WebIdentityToken": {tok}, "DurationSeconds": {"900"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint(region), strings.NewReader(form.Encode()))
	if err != nil {
		return Credentials{}, &dsl.StsAssumeRoleFailed{Provider: "aws", Reason: err.Error()}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := doer.Do(req)
	if err != nil {
		return Credentials{}, &dsl.StsAssumeRoleFailed{Provider: "aws", Reason: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `xml:"Error"`
		}
		_ = xml.Unmarshal(body, &e)
		return Credentials{}, &dsl.StsAssumeRoleFailed{Provider: "aws", Status: resp.StatusCode,
			Reason: strings.TrimSpace(e.Error.Code + ": " + e.Error.Message)}
	}
	var ok200 struct {
		Result struct {
			Credentials struct {
				AccessKeyID     string `xml:"AccessKeyId"`
				SecretAccessKey string `xml:"SecretAccessKey"`
				SessionToken    string `xml:"SessionToken"`
				Expiration      string `xml:"Expiration"`
			} `xml:"Credentials"`
		} `xml:"AssumeRoleWithWebIdentityResult"`
	}
	if err := xml.Unmarshal(body, &ok200); err != nil || ok200.Result.Credentials.AccessKeyID == "" {
		return Credentials{}, &dsl.StsAssumeRoleFailed{Provider: "aws", Status: resp.StatusCode, Reason: "the STS answer holds no credentials"}
	}
	cr := ok200.Result.Credentials
	exp, err := time.Parse(time.RFC3339, cr.Expiration)
	if err != nil {
		exp = now.Add(15 * time.Minute)
	}
	c = Credentials{AccessKeyID: cr.AccessKeyID, SecretAccessKey: cr.SecretAccessKey, SessionToken: cr.SessionToken, Expires: exp}
	s.mu.Lock()
	s.cache[key] = c
	s.mu.Unlock()
	return c, nil
}

// sign signs r (bound for AI Gateway's …/aws-bedrock/bedrock-runtime/<region>/<path>)
// as the request to https://bedrock-runtime.<region>.amazonaws.com/<path> it stands for.
func (br *bedrockRoute) sign(r *http.Request, body []byte, c Credentials, now time.Time) error {
	const marker = "/bedrock-runtime/"
	i := strings.Index(r.URL.Path, marker)
	if i < 0 {
		return fmt.Errorf("bedrock: request path %q has no %s segment", r.URL.Path, marker)
	}
	rest := r.URL.Path[i+len(marker):]
	region, path, _ := strings.Cut(rest, "/")
	target := &url.URL{Scheme: "https", Host: "bedrock-runtime." + region + ".amazonaws.com", Path: "/" + path, RawQuery: r.URL.RawQuery}
	SignV4(r.Header, r.Method, target, body, c, region, "bedrock", now)
	return nil
}

// SignV4 adds AWS Signature Version 4 headers (Authorization, X-Amz-Date,
// X-Amz-Content-Sha256, X-Amz-Security-Token) to h for a request to u with body.
// Signed headers: host, content-length, content-type and x-amz-*.
func SignV4(h http.Header, method string, u *url.URL, body []byte, c Credentials, region, service string, now time.Time) {
	now = now.UTC()
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	h.Set("X-Amz-Date", amzDate)
	h.Set("X-Amz-Content-Sha256", payload)
	if c.SessionToken != "" {
		h.Set("X-Amz-Security-Token", c.SessionToken)
	}
	headers := map[string]string{"host": u.Host}
	if len(body) > 0 {
		headers["content-length"] = strconv.Itoa(len(body))
	}
	for k, v := range h {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-amz-") || lk == "content-type" {
			headers[lk] = strings.Join(strings.Fields(strings.Join(v, ",")), " ")
		}
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	slices.Sort(names)
	var canonHeaders strings.Builder
	for _, k := range names {
		canonHeaders.WriteString(k + ":" + headers[k] + "\n")
	}
	signed := strings.Join(names, ";")
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	canon := strings.Join([]string{method, path, canonicalQuery(u.Query()), canonHeaders.String(), signed, payload}, "\n")
	scope := day + "/" + region + "/" + service + "/aws4_request"
	cs := sha256.Sum256([]byte(canon))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(cs[:])
	k := hmacSHA256([]byte("AWS4"+c.SecretAccessKey), day)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(k, toSign))
	h.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+c.AccessKeyID+"/"+scope+", SignedHeaders="+signed+", Signature="+sig)
}

func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		vs := slices.Clone(q[k])
		slices.Sort(vs)
		for _, v := range vs {
			parts = append(parts, awsEscape(k)+"="+awsEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

func awsEscape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
