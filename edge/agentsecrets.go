package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/flare-dispatch/flare-dispatch/agentapi"
)

// The secrets an execution may load (POST /v1/agent/:exec/secrets) are exactly:
//
//   - the keys its dispatch declared: inputs.secretPrefix + each of inputs.secrets
//     (contract §5.3); for a child execution only those its parent may load too, since
//     a child's inputs come from the parent's agent, which runs the pull request's code;
//   - the whole keys its run's spec declares (dsl.Spec.Needs.Secrets);
//
// and never a key of the edge's own records (reservedKeyPrefixes), whatever is
// declared. Anything else is 403 secret_not_declared, logged with the execution.

// reservedKeyPrefixes start the CONFIG_KV keys the edge keeps for itself: check-run
// records (with log tokens), installation tokens, fan-out groups, writeback state,
// webhook and manifest replay guards. No agent route serves them.
var reservedKeyPrefixes = []string{
	"check-run/", "check-run-id:", "check-annotated:", "children/", "writeback/",
	"installation:", "install-token:", "gh-delivery:", "manifest-state:",
}

func reservedKey(key string) bool {
	for _, p := range reservedKeyPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// maxSecretDepth bounds the walk up a chain of parents (fan-out is one level deep
// today; a loop in corrupt metadata must not spin).
const maxSecretDepth = 8

// declaredSecrets is the set of whole CONFIG_KV keys execution id may load.
func (s *Server) declaredSecrets(ctx context.Context, id string, depth int) (map[string]bool, error) {
	if depth > maxSecretDepth {
		return nil, fmt.Errorf("execution %s: parent chain deeper than %d", id, maxSecretDepth)
	}
	ex, err := s.Meta.Execution(ctx, id)
	if err != nil {
		return nil, err
	}
	var p Params
	_ = json.Unmarshal(ex.Input, &p)
	// Each field on its own: a run whose inputs use "secrets" for something else
	// declares nothing rather than failing the route.
	var in map[string]json.RawMessage
	_ = json.Unmarshal(p.Inputs, &in)
	var keys []string
	var prefix string
	_ = json.Unmarshal(in["secrets"], &keys)
	_ = json.Unmarshal(in["secretPrefix"], &prefix)
	fromInputs := map[string]bool{}
	for _, k := range keys {
		if k != "" && !reservedKey(prefix+k) {
			fromInputs[prefix+k] = true
		}
	}
	if ex.Parent != "" && len(fromInputs) > 0 {
		parent, err := s.declaredSecrets(ctx, ex.Parent, depth+1)
		if err != nil {
			return nil, err
		}
		for k := range fromInputs {
			if !parent[k] {
				delete(fromInputs, k)
			}
		}
	}
	if run, ok := s.Runs[ex.Run]; ok {
		for _, k := range run.Spec().Needs.Secrets {
			if k != "" && !reservedKey(k) {
				fromInputs[k] = true
			}
		}
	}
	return fromInputs, nil
}

// agentSecrets serves loadSecrets: CONFIG_KV keys <prefix><key> (contract §5.3), each
// of which the execution must have declared.
func (s *Server) agentSecrets(w http.ResponseWriter, r *http.Request) {
	var q agentapi.SecretsRequest
	id, _, ok := s.agentLive(w, r, &q)
	if !ok {
		return
	}
	if len(q.Keys) > maxConfigKeys {
		writeError(w, http.StatusBadRequest, "invalid_body", fmt.Sprintf("at most %d keys", maxConfigKeys), "field", "keys")
		return
	}
	allowed, err := s.declaredSecrets(r.Context(), id, 0)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "metadata_error", err.Error())
		return
	}
	for i, k := range q.Keys {
		if full := q.Prefix + k; k == "" || !allowed[full] {
			s.Log.Warn("secret refused: not declared by the execution", "execution", id, "key", full)
			writeError(w, http.StatusForbidden, "secret_not_declared",
				fmt.Sprintf("execution %s did not declare the secret %q (inputs.secrets under inputs.secretPrefix, or Spec.Needs.Secrets)", id, full),
				"field", fmt.Sprintf("keys[%d]", i))
			return
		}
	}
	out := agentapi.Secrets{Values: map[string]string{}}
	for _, k := range q.Keys {
		v, found, err := s.configKV().Get(r.Context(), q.Prefix+k)
		if err != nil && !errors.Is(err, ErrNotFound) {
			writeError(w, http.StatusInternalServerError, "kv_error", err.Error())
			return
		}
		if found {
			out.Values[k] = v
		} else {
			out.Missing = append(out.Missing, k)
		}
	}
	writeJSON(w, http.StatusOK, out)
}
