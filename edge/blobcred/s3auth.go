package blobcred

import (
	"net/http"
	"net/url"
	"strings"
)

// scopedQuery is every query parameter a scoped credential may send: the SDK's object,
// list and multipart calls plus presigning. Anything else (acl, tagging, versioning,
// versionId, delete, location, …) is refused rather than classified.
var scopedQuery = map[string]bool{
	"x-id": true, "list-type": true, "prefix": true, "delimiter": true, "max-keys": true,
	"continuation-token": true, "start-after": true, "marker": true, "fetch-owner": true,
	"encoding-type": true, "uploads": true, "uploadId": true, "partNumber": true,
	"response-content-type": true, "response-content-disposition": true,
	"response-content-encoding": true, "response-content-language": true,
	"response-cache-control": true, "response-expires": true,
	"X-Amz-Algorithm": true, "X-Amz-Credential": true, "X-Amz-Date": true,
	"X-Amz-Expires": true, "X-Amz-SignedHeaders": true, "X-Amz-Signature": true,
	"X-Amz-Content-Sha256": true,
}

// Authorize decides whether p may perform the path-style S3 request r on bucket. The
// admin may do anything. A scoped credential may, on that bucket only: GET/HEAD an object
// under a readable grant; PUT (not copy), DELETE and multipart-upload an object under a
// writable grant; list with a prefix inside a readable grant. Keys must pass ValidKey.
//
// The classification follows S3's (and gofakes3's) routing order: uploadId, then uploads,
// then object, then bucket; the key is r.URL.Path after the bucket, as the server will use it.
func Authorize(p Principal, r *http.Request, bucket string) error {
	if p.Admin {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return invalid("query string: %v", err)
	}
	for k, vs := range q {
		if !scopedQuery[k] {
			return denied("query parameter %q is not allowed for this credential", k)
		}
		if len(vs) != 1 {
			return denied("query parameter %q repeated", k)
		}
	}
	b, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if b != bucket {
		return denied("bucket %q is not allowed for this credential", b)
	}
	need := func(perm Perm) error {
		if !p.Claims.Allows(key, perm) {
			return denied("%s of %q is outside the credential's grants", perm, key)
		}
		return nil
	}
	switch {
	case q.Get("uploadId") != "":
		switch r.Method {
		case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete:
			if r.Header.Get("X-Amz-Copy-Source") != "" {
				return denied("copy is not allowed for this credential")
			}
			return need(Write)
		}
	case q.Has("uploads"):
		if r.Method == http.MethodPost && key != "" {
			return need(Write)
		}
	case key != "":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return need(Read)
		case http.MethodPut:
			if r.Header.Get("X-Amz-Copy-Source") != "" {
				return denied("copy is not allowed for this credential")
			}
			return need(Write)
		case http.MethodDelete:
			return need(Write)
		}
	default:
		if r.Method == http.MethodGet {
			if prefix := q.Get("prefix"); !p.Claims.AllowsList(prefix) {
				return denied("listing %q is outside the credential's grants", prefix)
			}
			return nil
		}
	}
	return denied("%s %s is not allowed for this credential", r.Method, r.URL.Path)
}
