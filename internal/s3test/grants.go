package s3test

import (
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
)

// CredentialWith mints exec's credential with the repository's cache writable or not
// (the edge grants write to every execution but a pull request's).
func (s *Store) CredentialWith(t testing.TB, exec, repo string, cacheWrite bool) (id, secret string) {
	t.Helper()
	id, secret, err := blobcred.Mint(root, exec, blobcred.ExecGrants(exec, repo, cacheWrite), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return id, secret
}
