package model_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/flare-dispatch/flare-dispatch/dsl"
	"github.com/flare-dispatch/flare-dispatch/edge/model"
	"github.com/flare-dispatch/flare-dispatch/edge/oidc"
	"github.com/flare-dispatch/flare-dispatch/internal/fakeopenai"
)

// Our SigV4 signer must produce what AWS's own SDK produces for the same request.
func TestSignV4MatchesTheAWSSDK(t *testing.T) {
	body := []byte(`{"model":"anthropic.claude","messages":[]}`)
	u, _ := url.Parse("https://bedrock-runtime.eu-west-1.amazonaws.com/openai/v1/chat/completions?b=2&a=x%20y")
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	creds := model.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "secret/key+1", SessionToken: "session-token"}

	ours := http.Header{"Content-Type": {"application/json"}}
	model.SignV4(ours, "POST", u, body, creds, "eu-west-1", "bedrock", now)

	req, _ := http.NewRequest("POST", u.String(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amz-Content-Sha256", ours.Get("X-Amz-Content-Sha256"))
	sum := sha256.Sum256(body)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey,
		SessionToken: creds.SessionToken}, req, hex.EncodeToString(sum[:]), "bedrock", "eu-west-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if ours.Get("Authorization") != req.Header.Get("Authorization") {
		t.Fatalf("ours:\n%s\nSDK:\n%s", ours.Get("Authorization"), req.Header.Get("Authorization"))
	}
}

// fakeSTS answers AssumeRoleWithWebIdentity after verifying the OIDC token with the
// issuer's JWKS, as AWS does with the discovery document.
func fakeSTS(t *testing.T, iss *oidc.Issuer, calls *int) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls++
		_ = r.ParseForm()
		jwk := iss.JWKS()["keys"].([]oidc.JWK)[0]
		c, err := oidc.Verify(r.PostForm.Get("WebIdentityToken"), jwk, time.Now())
		if err != nil || c.Aud != "sts.amazonaws.com" || r.PostForm.Get("Action") != "AssumeRoleWithWebIdentity" {
			w.WriteHeader(400)
			fmt.Fprint(w, `<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad token</Message></Error></ErrorResponse>`)
			return
		}
		if r.PostForm.Get("RoleArn") == "arn:aws:iam::1:role/denied" {
			w.WriteHeader(403)
			fmt.Fprint(w, `<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized to perform sts:AssumeRoleWithWebIdentity</Message></Error></ErrorResponse>`)
			return
		}
		fmt.Fprintf(w, `<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>%s</SubjectFromWebIdentityToken>
<Credentials><AccessKeyId>ASIATEMP</AccessKeyId><SecretAccessKey>tempsecret</SecretAccessKey><SessionToken>tok-%s</SessionToken>
<Expiration>%s</Expiration></Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>`,
			c.Sub, c.Sub, time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestBedrockTradesAnOIDCTokenAndSignsTheCall(t *testing.T) {
	f := fakeopenai.New("")
	defer f.Close()
	jwk, _ := oidc.GenerateJWK()
	iss, err := oidc.New("https://runs.example.com", jwk)
	if err != nil {
		t.Fatal(err)
	}
	var stsCalls int
	sts := fakeSTS(t, iss, &stsCalls)
	def, backends := model.Backends(model.Env{AccountID: "acct", GatewayID: "gw", GatewayBase: f.URL})
	g := model.New(http.DefaultClient, def, backends, nil).WithBedrock(iss, sts.URL)

	req := model.Request{Model: "bedrock/openai.gpt-oss-120b-1:0", User: "u", Subject: "pr-review:exec-1",
		AWS: &model.AWS{RoleArn: "arn:aws:iam::1:role/reviewer", Region: "eu-west-1", Session: "pr-review-abc"}}
	for range 2 {
		f.Push(fakeopenai.Reply{Text: "ok"})
		if _, err := g.Complete(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	if stsCalls != 1 {
		t.Fatalf("STS called %d times; credentials must be cached", stsCalls)
	}
	r := f.Requests()[0]
	if r.Path != "/v1/acct/gw/aws-bedrock/bedrock-runtime/eu-west-1/openai/v1/chat/completions" || r.Body.Model != "openai.gpt-oss-120b-1:0" {
		t.Fatalf("path %s model %s", r.Path, r.Body.Model)
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=ASIATEMP/") || !strings.Contains(auth, "/eu-west-1/bedrock/aws4_request") ||
		r.Header.Get("X-Amz-Security-Token") != "tok-pr-review:exec-1" {
		t.Fatalf("auth %q token %q", auth, r.Header.Get("X-Amz-Security-Token"))
	}
	// The signature is over the request Bedrock would see: recompute it.
	u, _ := url.Parse("https://bedrock-runtime.eu-west-1.amazonaws.com/openai/v1/chat/completions")
	h := http.Header{"Content-Type": {r.Header.Get("Content-Type")}}
	at, _ := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	model.SignV4(h, "POST", u, r.Raw, model.Credentials{AccessKeyID: "ASIATEMP", SecretAccessKey: "tempsecret", SessionToken: "tok-pr-review:exec-1"},
		"eu-west-1", "bedrock", at)
	if h.Get("Authorization") != auth {
		t.Fatalf("signature does not match the Bedrock request:\n%s\n%s", auth, h.Get("Authorization"))
	}

	req.AWS.RoleArn = "arn:aws:iam::1:role/denied"
	_, err = g.Complete(context.Background(), req)
	var sf *dsl.StsAssumeRoleFailed
	if !errors.As(err, &sf) || sf.Status != 403 || !strings.Contains(sf.Reason, "AccessDenied") {
		t.Fatalf("%v", err)
	}
	req.AWS = nil
	_, err = g.Complete(context.Background(), req)
	var bu *dsl.BackendUnconfigured
	if !errors.As(err, &bu) || bu.Missing[0] != "roleArn" {
		t.Fatalf("%v", err)
	}
}
