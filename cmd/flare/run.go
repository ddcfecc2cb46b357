package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

var cmdRun = command{
	name:    "run",
	summary: "run a run end to end on the embedded stack and print its check-run summary",
	usage: `Boots the embedded stack on loopback (or uses a running 'flare up' under --data),
dispatches through the real HTTP + HMAC path, follows the steps, prints the check-run
summary and where the logs are. Exits 0 when the run succeeded, 1 when it failed, 2
when it was cancelled or timed out.

Examples:
  flare run offload-test --repo . --command 'go test ./actors/...'
  flare run offload-test --inputs '{"repo":".","command":"make test","timeoutSec":900}'
  flare run offload-test --repo ../app --sha 1a2b3c --command 'npm test' --report-only
  OPENAI_BASE_URL=http://localhost:11434/v1 flare run pr-review --repo . --base main --model qwen2.5-coder
      (reviews HEAD against main and prints the review; OPENAI_API_KEY if the endpoint needs one)`,
}

func init() { cmdRun.run = runRun }

// dispatchFlags are the flags run and dispatch share.
type dispatchFlags struct {
	inputs, repo, sha, command, data, key string
	base, model                           string
	reportOnly, jsonOut, quiet            bool
}

func addDispatchFlags(fs *flag.FlagSet) *dispatchFlags {
	f := &dispatchFlags{}
	fs.StringVar(&f.inputs, "inputs", "", "the run's inputs as JSON (the same JSON as a dispatch's inputs)")
	fs.StringVar(&f.repo, "repo", "", "repository: a local path (local mode) or owner/name; sets inputs.repo")
	fs.StringVar(&f.sha, "sha", "", "commit to check out; default the repository's HEAD")
	fs.StringVar(&f.command, "command", "", "command to run; sets inputs.command")
	fs.BoolVar(&f.reportOnly, "report-only", false, "keep the check green when the command fails; sets inputs.reportOnly")
	fs.StringVar(&f.data, "data", envOr("FLARE_DATA", ".flare"), "state directory")
	fs.StringVar(&f.key, "idempotency-key", "", "execution id to use (default: a new one per invocation)")
	fs.BoolVar(&f.jsonOut, "json", false, "print the result as JSON")
	fs.BoolVar(&f.quiet, "quiet", false, "print no live output and no summary: only the final status line (or the JSON with --json)")
	fs.StringVar(&f.base, "base", "", "pr-review: the branch or commit to review against; sets inputs.baseSha")
	fs.StringVar(&f.model, "model", "", "pr-review and the report runs: the model to call; sets inputs.modelId")
	return f
}

// envelope builds the dispatch body from flags.
func (f *dispatchFlags) envelope(run string) (edge.DispatchBody, error) {
	inputs := map[string]any{}
	if f.inputs != "" {
		if err := json.Unmarshal([]byte(f.inputs), &inputs); err != nil {
			return edge.DispatchBody{}, fmt.Errorf("--inputs is not a JSON object: %w", err)
		}
	}
	if f.repo != "" {
		inputs["repo"] = f.repo
	}
	if f.command != "" {
		inputs["command"] = f.command
	}
	if f.reportOnly {
		inputs["reportOnly"] = true
	}
	if f.sha != "" {
		inputs["sha"] = f.sha
	}
	if f.model != "" {
		inputs["modelId"] = f.model
	}
	repo, _ := inputs["repo"].(string)
	sha, _ := inputs["sha"].(string)
	ownerName := repo
	if repo != "" && !looksLikeOwnerName(repo) {
		path, resolved, on, err := localTarget(repo, sha)
		if err != nil {
			return edge.DispatchBody{}, err
		}
		inputs["repo"], sha, ownerName = path, resolved, on
		inputs["sha"] = resolved
		if f.base != "" {
			base, err := exec.Command("git", "-C", path, "rev-parse", "--verify", f.base+"^{commit}").Output()
			if err != nil {
				return edge.DispatchBody{}, fmt.Errorf("--base %s: not a commit of %s", f.base, path)
			}
			inputs["baseSha"] = strings.TrimSpace(string(base))
		}
	} else if f.base != "" {
		inputs["baseSha"] = f.base
	}
	raw, _ := json.Marshal(inputs)
	return edge.DispatchBody{Run: run, GitHub: edge.DispatchGitHub{Repo: ownerName, SHA: sha}, Inputs: raw}, nil
}

func looksLikeOwnerName(s string) bool {
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "file://") {
		return false
	}
	if _, err := os.Stat(s); err == nil {
		return false
	}
	return strings.Count(s, "/") == 1
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdRun, stderr)
	f := addDispatchFlags(fs)
	timeout := fs.Duration("timeout", 2*time.Hour, "give up waiting after this long")
	noIso := fs.Bool("no-isolation", false, "embedded stack: run the command as this user without bubblewrap (it can then read the stack's secrets)")
	fresh := fs.Bool("fresh-sandbox", false, "embedded stack: "+freshSandboxHelp)
	keep := fs.Bool("keep-workspace", false, "embedded stack: keep the run's workspace after it ends, for debugging")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return exitUsage
	}
	run := args[0]
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	body, err := f.envelope(run)
	if err != nil {
		fmt.Fprintln(stderr, "flare run:", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	c, running := findRunningStack(f.data)
	if running {
		fmt.Fprintf(stderr, "using the stack running at %s\n", c.url)
		if *fresh {
			fmt.Fprintln(stderr, "note: --fresh-sandbox applies to an embedded stack; the running one keeps its own mode (flare up --fresh-sandbox)")
		}
	} else {
		st, err := openStack(ctx, "127.0.0.1:0", f.data, false, !*noIso, *fresh, *keep, stderr)
		if err != nil {
			fmt.Fprintln(stderr, "flare run: start the embedded stack:", err)
			return exitTrouble
		}
		defer st.Close(context.Background())
		c = &stackClient{url: st.URL, secret: st.Secrets.HMACSecret, http: &http.Client{Timeout: 30 * time.Second}}
		fmt.Fprintf(stderr, "embedded stack at %s (state in %s)\n", st.URL, f.data)
	}
	key := f.key
	if key == "" {
		key = newIdempotencyKey(run)
	}
	start := time.Now()
	res, status, err := c.dispatch(ctx, body, key)
	if err != nil {
		fmt.Fprintln(stderr, "flare run:", err)
		return exitTrouble
	}
	if status != http.StatusAccepted {
		fmt.Fprintln(stderr, "flare run:", describeDispatchError(res, status, c.secret))
		return exitUsage
	}
	if !f.quiet {
		fmt.Fprintf(stderr, "dispatched %s as %s\n", run, res.ExecutionID)
	}
	v, err := c.follow(ctx, res.ExecutionID, f.live(stderr))
	if err != nil {
		fmt.Fprintln(stderr, "flare run: following", res.ExecutionID+":", err)
		return exitTrouble
	}
	embedded := f.data
	if running {
		embedded = ""
	}
	return printResult(stdout, v, res.link(), time.Since(start), f, embedded)
}

// live is what following prints while the run goes: its steps and output on w,
// prefixed per shard for a fan-out; nothing with --quiet.
func (f *dispatchFlags) live(w io.Writer) watchOpts {
	if f.quiet {
		return watchOpts{}
	}
	return watchOpts{out: w, steps: true}
}

// printResult prints the check-run summary and ends with the status line (only that
// with --quiet); the exit code says whether the run succeeded.
func printResult(out io.Writer, v executionView, logsURL string, took time.Duration, f *dispatchFlags, embedded string) int {
	code := exitFor(v.conclusion())
	if f.jsonOut {
		_ = json.NewEncoder(out).Encode(map[string]any{"executionId": v.Execution.ID, "status": v.Execution.Status,
			"check": v.Check, "output": v.Summary, "logsUrl": logsURL, "steps": v.Steps, "conclusion": v.conclusion(),
			"durationMs": took.Milliseconds()})
		return code
	}
	if f.quiet {
		fmt.Fprintln(out, statusLine(v.conclusion(), v.Execution.Run, v.Execution.ID, took, logsURL))
		return code
	}
	fmt.Fprintf(out, "\n── check-run %s: %s ──\n", v.Check.Name, v.Check.Conclusion)
	fmt.Fprintln(out, v.Check.Summary)
	var review struct {
		Comment string `json:"comment"`
	}
	if json.Unmarshal(v.Summary, &review) == nil && review.Comment != "" {
		// pr-review: the review itself, as it would be posted on the pull request.
		fmt.Fprintf(out, "\n── review ──\n%s\n", review.Comment)
	} else if len(v.Summary) > 0 {
		fmt.Fprintf(out, "\noutput: %s\n", v.Summary)
	}
	fmt.Fprintf(out, "\nlogs: %s\n", logsURL)
	if embedded != "" {
		fmt.Fprintf(out, "      (the embedded stack has stopped; the logs are kept in %s: `flare up --data %s`, then `flare logs --data %s %s`)\n",
			embedded, embedded, embedded, v.Execution.ID)
	}
	fmt.Fprintln(out, statusLine(v.conclusion(), v.Execution.Run, v.Execution.ID, took, logsURL))
	return code
}
