package agentapi

import (
	"encoding/json"
	"testing"
)

// TestDraftRequestIsFlat: the attempt travels beside the pull request's fields, not
// inside a nested object, so the body the edge decodes is the one the contract names.
func TestDraftRequestIsFlat(t *testing.T) {
	b, err := json.Marshal(DraftRequest{Attempt: 2, DraftPullRequest: DraftPullRequest{
		Repo: "acme/web", HeadBranch: "flare-dispatch/x", Title: "t", CommitMessage: "m",
		Files: []FileChange{{Path: "a.txt", Content: "hi"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"attempt":2,"repo":"acme/web","headBranch":"flare-dispatch/x","title":"t","commitMessage":"m","files":[{"path":"a.txt","content":"hi"}]}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
}
