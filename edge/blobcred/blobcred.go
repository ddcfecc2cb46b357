// Package blobcred mints and checks the short-lived S3 credentials an agent uses to write
// an execution's logs, artifacts and cache. Nothing is stored: the access key id carries
// its own claims (execution, granted prefixes, expiry) authenticated with a MAC, and the
// secret access key is derived from the root secret with HKDF over the access key id, so
// whoever holds the root can recompute both.
//
//	access key id = "FDB1" + base64url(claims ‖ HMAC-SHA256(k_id, "FDB1" ‖ claims)[:16])
//	k_id          = HKDF-SHA256(root, salt = none, info = "flare-dispatch/blob/v1/key-id")
//	secret        = base64url(HKDF-SHA256(root, salt = none, info = "flare-dispatch/blob/v1\x00" + access key id))
//
// claims is a compact binary record: uvarint expiry (Unix seconds), the execution id and
// 1–16 grants (permission byte, prefix), strings as uvarint length + bytes. The id only
// uses [A-Za-z0-9_-], so it passes wherever SigV4 puts an access key id (Credential=…/…).
//
// The package also verifies SigV4-signed S3 requests (header and presigned query forms)
// against these credentials and decides whether the S3 operation stays inside the grants.
// It uses the standard library only and builds for GOOS=js GOARCH=wasm.
package blobcred

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Perm is what a grant allows on the keys under its prefix.
type Perm uint8

const (
	// Read allows GET and HEAD of objects and listing under the prefix.
	Read Perm = 1 << iota
	// Write allows PUT (single and multipart) and DELETE of objects under the prefix.
	Write
	// ReadWrite is both.
	ReadWrite = Read | Write
)

func (p Perm) String() string {
	switch p {
	case Read:
		return "read"
	case Write:
		return "write"
	case ReadWrite:
		return "read-write"
	}
	return fmt.Sprintf("perm(%d)", uint8(p))
}

// Grant allows Perm on every key that starts with Prefix. Prefix ends with "/".
type Grant struct {
	Prefix string
	Perm   Perm
}

// Claims is what an access key id says about itself once verified.
type Claims struct {
	Exec    string
	Grants  []Grant
	Expires time.Time
}

// Limits of a credential.
const (
	MaxTTL         = 24 * time.Hour
	MaxGrants      = 16
	MaxPrefixBytes = 512
	MinRootBytes   = 16
	// KeyIDPrefix starts every access key id this package mints; an admin key id must not.
	KeyIDPrefix = "FDB1"

	tagBytes        = 16
	maxPayloadBytes = 4096
	maxKeyIDChars   = len(KeyIDPrefix) + (maxPayloadBytes+tagBytes+2)/3*4
)

// Errors from Mint and Verify.
var (
	ErrMalformed = errors.New("blobcred: malformed access key id")
	ErrForged    = errors.New("blobcred: access key id not minted with this root")
	ErrExpired   = errors.New("blobcred: access key id expired")
	ErrRoot      = errors.New("blobcred: root secret shorter than 16 bytes")
)

const (
	infoKeyID  = "flare-dispatch/blob/v1/key-id"
	infoSecret = "flare-dispatch/blob/v1\x00"
)

// ExecGrants are the grants an agent gets for one execution: read-write on
// logs/<exec>/ and artifacts/<exec>/, and on cache/<repo>/ read-write when cacheWrite,
// else read-only. repo is "owner/name".
func ExecGrants(exec, repo string, cacheWrite bool) []Grant {
	cache := Read
	if cacheWrite {
		cache = ReadWrite
	}
	return []Grant{
		{Prefix: "logs/" + exec + "/", Perm: ReadWrite},
		{Prefix: "artifacts/" + exec + "/", Perm: ReadWrite},
		{Prefix: "cache/" + repo + "/", Perm: cache},
	}
}

// Mint returns a credential for exec that allows grants until now+ttl (whole seconds,
// rounded down). The same inputs give the same credential.
func Mint(root []byte, exec string, grants []Grant, ttl time.Duration, now time.Time) (accessKeyID, secret string, err error) {
	if len(root) < MinRootBytes {
		return "", "", ErrRoot
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", "", fmt.Errorf("blobcred: ttl %s outside (0, %s]", ttl, MaxTTL)
	}
	c := Claims{Exec: exec, Grants: grants, Expires: now.Add(ttl).Truncate(time.Second)}
	if err := c.validate(); err != nil {
		return "", "", err
	}
	payload := c.encode()
	tag := mac(root, payload)
	accessKeyID = KeyIDPrefix + base64.RawURLEncoding.EncodeToString(append(payload, tag...))
	return accessKeyID, deriveSecret(root, accessKeyID), nil
}

// Verify checks that accessKeyID was minted with root and has not expired at now, and
// returns its claims and secret access key.
func Verify(root []byte, accessKeyID string, now time.Time) (Claims, string, error) {
	if len(root) < MinRootBytes {
		return Claims{}, "", ErrRoot
	}
	payload, tag, err := split(accessKeyID)
	if err != nil {
		return Claims{}, "", err
	}
	if !hmac.Equal(tag, mac(root, payload)) {
		return Claims{}, "", ErrForged
	}
	c, err := decode(payload)
	if err != nil {
		return Claims{}, "", err
	}
	if !now.Before(c.Expires) {
		return Claims{}, "", fmt.Errorf("%w at %s", ErrExpired, c.Expires.UTC().Format(time.RFC3339))
	}
	return c, deriveSecret(root, accessKeyID), nil
}

// Parse decodes an access key id WITHOUT checking its MAC or expiry: for logs and
// diagnostics only, never for access decisions.
func Parse(accessKeyID string) (Claims, error) {
	payload, _, err := split(accessKeyID)
	if err != nil {
		return Claims{}, err
	}
	return decode(payload)
}

// Allows reports whether the claims allow perm on the object key.
func (c Claims) Allows(key string, perm Perm) bool {
	if perm == 0 || !ValidKey(key) {
		return false
	}
	for _, g := range c.Grants {
		if g.Perm&perm == perm && strings.HasPrefix(key, g.Prefix) {
			return true
		}
	}
	return false
}

// AllowsList reports whether the claims allow listing keys that start with prefix:
// prefix must lie inside a readable grant (so "logs/<exec>" without the slash does not).
func (c Claims) AllowsList(prefix string) bool {
	if !validPrefix(prefix) {
		return false
	}
	for _, g := range c.Grants {
		if g.Perm&Read != 0 && strings.HasPrefix(prefix, g.Prefix) {
			return true
		}
	}
	return false
}

// ValidKey reports whether key is acceptable for a scoped credential: 1–1024 bytes of
// UTF-8 without control characters or backslashes, no percent-escapes (a key that still
// looks URL-encoded is refused rather than risk a second decoding somewhere), and "/"
// separated segments that are neither empty nor "." or "..".
func ValidKey(key string) bool {
	if key == "" || strings.HasSuffix(key, "/") {
		return false
	}
	return validPrefix(key)
}

// validPrefix is ValidKey that also accepts a trailing "/" (a list or grant prefix).
func validPrefix(p string) bool {
	if p == "" || len(p) > 1024 || !utf8.ValidString(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch b := p[i]; {
		case b < 0x20 || b == 0x7f || b == '\\':
			return false
		case b == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			return false
		}
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if s == "" && i == len(segs)-1 && i > 0 {
			break // trailing slash
		}
		if s == "" || s == "." || s == ".." {
			return false
		}
	}
	return true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// validExec matches the contract's execution id: ^[A-Za-z0-9:_-]{3,128}$.
func validExec(s string) bool {
	if len(s) < 3 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('0' <= b && b <= '9' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || b == ':' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

func (c Claims) validate() error {
	if !validExec(c.Exec) {
		return fmt.Errorf("blobcred: execution id %q does not match ^[A-Za-z0-9:_-]{3,128}$", c.Exec)
	}
	if len(c.Grants) == 0 || len(c.Grants) > MaxGrants {
		return fmt.Errorf("blobcred: %d grants, want 1..%d", len(c.Grants), MaxGrants)
	}
	for _, g := range c.Grants {
		if g.Perm == 0 || g.Perm&^ReadWrite != 0 {
			return fmt.Errorf("blobcred: grant %q: invalid permission %d", g.Prefix, g.Perm)
		}
		if len(g.Prefix) > MaxPrefixBytes || !strings.HasSuffix(g.Prefix, "/") || !validPrefix(g.Prefix) {
			return fmt.Errorf("blobcred: grant prefix %q: want 1..%d bytes of valid key segments ending in /", g.Prefix, MaxPrefixBytes)
		}
	}
	if c.Expires.Unix() <= 0 {
		return fmt.Errorf("blobcred: expiry %s before 1970", c.Expires)
	}
	return nil
}

func (c Claims) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(c.Expires.Unix()))
	b = appendString(b, c.Exec)
	b = binary.AppendUvarint(b, uint64(len(c.Grants)))
	for _, g := range c.Grants {
		b = append(b, byte(g.Perm))
		b = appendString(b, g.Prefix)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decode is the strict inverse of encode: canonical varints, no trailing bytes, and the
// same validation Mint applies.
func decode(p []byte) (Claims, error) {
	d := decoder{b: p}
	exp := d.uvarint()
	exec := d.str()
	n := d.uvarint()
	if d.err != nil || n == 0 || n > MaxGrants {
		return Claims{}, ErrMalformed
	}
	c := Claims{Exec: exec, Grants: make([]Grant, 0, n)}
	for range n {
		perm := d.byte()
		c.Grants = append(c.Grants, Grant{Perm: Perm(perm), Prefix: d.str()})
	}
	if d.err != nil || len(d.b) != 0 || exp > 1<<40 {
		return Claims{}, ErrMalformed
	}
	c.Expires = time.Unix(int64(exp), 0).UTC()
	if c.validate() != nil {
		return Claims{}, ErrMalformed
	}
	return c, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || n != len(binary.AppendUvarint(nil, v)) {
		d.err = ErrMalformed
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil || len(d.b) == 0 {
		d.err = ErrMalformed
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = ErrMalformed
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// split separates an access key id into claims payload and MAC tag.
func split(accessKeyID string) (payload, tag []byte, err error) {
	rest, ok := strings.CutPrefix(accessKeyID, KeyIDPrefix)
	if !ok || len(accessKeyID) > maxKeyIDChars {
		return nil, nil, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil || len(raw) <= tagBytes {
		return nil, nil, ErrMalformed
	}
	return raw[:len(raw)-tagBytes], raw[len(raw)-tagBytes:], nil
}

func mac(root, payload []byte) []byte {
	k, err := hkdf.Key(sha256.New, root, nil, infoKeyID, 32)
	if err != nil {
		panic(err) // only for lengths beyond 255*32 bytes
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(KeyIDPrefix))
	m.Write(payload)
	return m.Sum(nil)[:tagBytes]
}

func deriveSecret(root []byte, accessKeyID string) string {
	k, err := hkdf.Key(sha256.New, root, nil, infoSecret+accessKeyID, 32)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(k)
}
