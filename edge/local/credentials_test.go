package local_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/blobcred"
	"github.com/flare-dispatch/flare-dispatch/edge/blobs"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
)

// Credentials end with the run (issue 9, item 6): the blob credential and agent token
// the edge gave an execution's agent still verify after the run ends (they expire
// later), so the edge must refuse them by the execution's status. Minted here as the
// edge mints them (same root, same claims), through the real S3 store and agent API.
// Without the store's Ended check the second put succeeds and overwrites a log that is
// already served as immutable.
func TestCredentialsStopWorkingWhenTheRunEnds(t *testing.T) {
	st := startStack(t, nil)
	repo, shas := gittest.Repo(t, 1)
	r := dispatch(t, st, "offload-test", offloadBody(repo, shas[0], "sleep 60", nil), "creds-end")
	id := r.body["executionId"].(string)
	for executionView(t, st, id).Execution.Status != "running" {
		time.Sleep(50 * time.Millisecond)
	}

	cfg := edge.Config{HMACSecret: st.Secrets.HMACSecret}
	keyID, secret, err := blobcred.Mint(edge.BlobRoot(cfg), id, blobcred.ExecGrants(id, "local/app", false), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bl, err := blobs.New(st.BlobURL, "flare", keyID, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := "logs/" + id + "/probe.log"
	put := func(text string) error {
		return bl.Put(ctx, key, strings.NewReader(text), edge.BlobMeta{ContentType: "text/plain", Size: int64(len(text))})
	}
	agentToken := edge.MintAgentToken(cfg, edge.AgentClaims{Exec: id, Attempt: 1, Expires: time.Now().Add(time.Hour).Unix()})
	heartbeat := func() response {
		return post(t, st.URL+"/v1/agent/"+id+"/heartbeat", []byte(`{"attempt":1}`), map[string]string{"Authorization": "Bearer " + agentToken})
	}

	// While the run is live both work (the control: the refusals below are not a
	// wrong credential).
	if err := put("while running\n"); err != nil {
		t.Fatalf("put while running: %v", err)
	}
	if hb := heartbeat(); hb.status != http.StatusOK {
		t.Fatalf("heartbeat while running: %d %s", hb.status, hb.raw)
	}

	if c := post(t, st.URL+"/v1/executions/"+id+"/cancel", nil, map[string]string{"Authorization": "Bearer " + st.Secrets.AdminToken}); c.status != 202 {
		t.Fatalf("cancel: %d %s", c.status, c.raw)
	}
	waitDone(t, st, id, 20*time.Second)

	err = put("after the end\n")
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), "403") {
		t.Fatalf("put after the run ended: %v, want 403 AccessDenied", err)
	}
	rc, _, err := bl.Get(ctx, key)
	if err != nil {
		t.Fatalf("read own log after the end: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "while running\n" {
		t.Fatalf("log after the refused put: %q", got)
	}
	hb := heartbeat()
	var body struct{ Error string }
	_ = json.Unmarshal(hb.raw, &body)
	if hb.status != http.StatusConflict || body.Error != "stopped" {
		t.Fatalf("agent API after the run ended: %d %s, want 409 stopped", hb.status, hb.raw)
	}
}
