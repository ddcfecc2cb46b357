// Every registered run has a starter workflow here, and every workflow is checked:
// actionlint passes (with the Action's own action.yml for its inputs), and its dispatch
// step, run by the Action's script with the recipe's `with:` values under the GITHUB_*
// variables of each event the workflow listens to, is accepted by the embedded stack.
package recipes_test

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"

	"github.com/flare-dispatch/flare-dispatch/internal/actiontest"
	"github.com/flare-dispatch/flare-dispatch/internal/flarebuild"
	"github.com/flare-dispatch/flare-dispatch/internal/gittest"
	"github.com/flare-dispatch/flare-dispatch/runs"
)

// actionRef is how recipes name the Action; the test lints it as the local action.
const actionRef = "flare-dispatch/flare-dispatch/actions/flare-dispatch-action@main"

var flareBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "flare-recipes-")
	if err != nil {
		panic(err)
	}
	if flareBin, err = flarebuild.Flare(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build flare:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// recipeFiles maps run name → recipe path.
func recipeFiles(t *testing.T) map[string]string {
	paths, err := filepath.Glob("*.yml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range paths {
		out[strings.TrimSuffix(p, ".yml")] = p
	}
	return out
}

// A run registered without a recipe fails here, and so does a recipe for no run.
func TestEveryRegisteredRunHasARecipe(t *testing.T) {
	files := recipeFiles(t)
	names := runs.Registry().Names()
	for _, name := range names {
		if _, ok := files[name]; !ok {
			t.Errorf("run %q is registered but recipes/%s.yml does not exist: add a starter workflow for it", name, name)
		}
	}
	for name := range files {
		if !slices.Contains(names, name) {
			t.Errorf("recipes/%s.yml is for no registered run", name)
		}
	}
}

func TestRecipesPassActionlint(t *testing.T) {
	root, _ := filepath.Abs(flarebuild.Root())
	proj, err := actionlint.NewProject(root)
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range recipeFiles(t) {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(src), "uses: "+actionRef) {
				t.Fatalf("recipe does not use %s", actionRef)
			}
			// As a local action, actionlint checks the step's inputs against our
			// action.yml (unknown and missing required inputs) and lints action.yml.
			local := strings.ReplaceAll(string(src), actionRef, "./actions/flare-dispatch-action")
			// No shellcheck or pyflakes here: the empty paths switch them off.
			l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{Shellcheck: "", Pyflakes: ""})
			if err != nil {
				t.Fatal(err)
			}
			errs, err := l.Lint(filepath.Join(root, ".github", "workflows", path), []byte(local), proj)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range errs {
				t.Errorf("%s:%d:%d: %s [%s]", path, e.Line, e.Column, e.Message, e.Kind)
			}
		})
	}
}

// TestActionlintCatchesAWrongInput shows the lint above can fail: an input the Action
// does not declare is reported.
func TestActionlintCatchesAWrongInput(t *testing.T) {
	root, _ := filepath.Abs(flarebuild.Root())
	proj, _ := actionlint.NewProject(root)
	src := "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./actions/flare-dispatch-action\n" +
		"        with:\n          run: offload-test\n          endpoint: https://x\n          hmac-secret: s\n          hmac_secret: s\n"
	l, _ := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{})
	errs, err := l.Lint(filepath.Join(root, ".github", "workflows", "x.yml"), []byte(src), proj)
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) == 0 || !strings.Contains(errs[0].Message, "hmac_secret") {
		t.Fatalf("actionlint did not report the undeclared input: %v", errs)
	}
}

func TestRecipesDispatchStepsAreAccepted(t *testing.T) {
	st := actiontest.Stack(t, flareBin, nil)
	// A commit per case: the dispatcher's default id is (run, repository, commit), so
	// two events at one commit would be one execution.
	_, shas := gittest.Repo(t, 32)
	merge := strings.Repeat("e", 40) // the merge commit GitHub builds for a pull request
	for name, path := range recipeFiles(t) {
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		wf, perrs := actionlint.Parse(src)
		if len(perrs) > 0 {
			t.Fatalf("%s: %v", path, perrs[0])
		}
		with := dispatchStep(t, wf, path)
		if with["run"] != name {
			t.Fatalf("%s dispatches run %q", path, with["run"])
		}
		for _, ev := range wf.On {
			event := ev.EventName()
			if len(shas) == 0 {
				t.Fatal("more events than commits: make the repository longer")
			}
			sha := shas[0]
			shas = shas[1:]
			t.Run(name+"/"+event, func(t *testing.T) {
				r := runner(t, event, sha, merge)
				ctx := map[string]string{
					"vars.FLARE_DISPATCH_URL":       st.URL,
					"secrets.FLARE_DISPATCH_SECRET": st.Secrets.HMACSecret,
					"github.repository":             r.Repository,
					"github.sha":                    r.SHA,
					"github.ref":                    r.Ref,
				}
				var payload any
				_ = json.Unmarshal([]byte(r.Payload), &payload)
				flatten("github.event", payload, ctx)
				inputs := map[string]string{}
				for k, v := range with {
					inputs[k] = evaluate(t, v, ctx)
				}
				// Acceptance is the check: an await would follow a clone of
				// github.com/acme/app, which no test can reach.
				inputs["mode"] = "fire-and-forget"
				res := r.Run(t, inputs)
				if res.Code != 0 || !strings.Contains(res.Stdout, "Accepted: execution ") || res.Outputs["execution-id"] == "" {
					t.Fatalf("exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
				}
			})
		}
	}
}

// dispatchStep returns the `with:` of the recipe's one step that uses the Action.
func dispatchStep(t *testing.T, wf *actionlint.Workflow, path string) map[string]string {
	var found []map[string]string
	for _, job := range wf.Jobs {
		for _, s := range job.Steps {
			a, ok := s.Exec.(*actionlint.ExecAction)
			if !ok || a.Uses == nil || a.Uses.Value != actionRef {
				continue
			}
			with := map[string]string{}
			for k, in := range a.Inputs {
				with[k] = in.Value.Value
			}
			found = append(found, with)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d steps use the Action, want 1", path, len(found))
	}
	return found[0]
}

// runner is the job environment of one event, as GitHub sets it.
func runner(t *testing.T, event, sha, merge string) actiontest.Runner {
	r := actiontest.Runner{Repository: "acme/app", SHA: sha, Ref: "refs/heads/main", Event: event}
	switch event {
	case "push":
		r.Payload = fmt.Sprintf(`{"ref":"refs/heads/main","after":%q}`, sha)
	case "pull_request", "pull_request_target":
		r.SHA, r.Ref, r.HeadRef = merge, "refs/pull/5/merge", "feature"
		r.Payload = fmt.Sprintf(`{"action":"opened","number":5,"pull_request":{"number":5,"head":{"sha":%q,"ref":"feature"}}}`, sha)
	case "deployment_status":
		r.Payload = fmt.Sprintf(`{"deployment_status":{"state":"success","environment":"production","environment_url":"https://app.example.com"},"deployment":{"id":1,"sha":%q}}`, sha)
	case "workflow_dispatch":
		r.Payload = `{"inputs":{}}`
	case "schedule":
		r.Payload = `{"schedule":"0 4 * * 1"}`
	default:
		t.Fatalf("the test has no payload for event %q: add one", event)
	}
	return r
}

func flatten(prefix string, v any, into map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			flatten(prefix+"."+k, e, into)
		}
	case string:
		into[prefix] = x
	case nil:
	default:
		b, _ := json.Marshal(x)
		into[prefix] = string(b)
	}
}

var expr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// evaluate substitutes the expressions a recipe may use: context paths joined by ||
// (the first non-empty wins) and 'string' literals. A missing github.event path is
// empty, as on GitHub; any other unknown name fails, so a recipe cannot depend on a
// secret or variable the instructions do not mention.
func evaluate(t *testing.T, s string, ctx map[string]string) string {
	return expr.ReplaceAllStringFunc(s, func(m string) string {
		body := expr.FindStringSubmatch(m)[1]
		for _, term := range strings.Split(body, "||") {
			term = strings.TrimSpace(term)
			if strings.HasPrefix(term, "'") && strings.HasSuffix(term, "'") {
				if v := strings.Trim(term, "'"); v != "" {
					return v
				}
				continue
			}
			v, ok := ctx[term]
			if !ok && !strings.HasPrefix(term, "github.event.") {
				t.Fatalf("recipe expression %q: the test does not know %q", m, term)
			}
			if v != "" {
				return v
			}
		}
		return ""
	})
}
