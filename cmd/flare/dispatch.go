package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
)

var cmdDispatch = command{
	name:    "dispatch",
	summary: "sign and post a dispatch to a running stack, like the GitHub Action; print the execution id",
	usage: `Finds the stack of 'flare up' under --data (or use --url with HMAC_SECRET set).

Examples:
  flare dispatch offload-test --repo . --command 'go test ./...'
  flare dispatch offload-test --inputs '{"repo":".","command":"true"}' --idempotency-key my-key-1
  flare dispatch offload-test --repo . --command 'make test' --wait --timeout 20m

With --wait it follows the execution and exits with its result: 0 success, 1 failure,
2 cancelled or timed out (also when --timeout passes first; the run goes on).
  HMAC_SECRET=... flare dispatch offload-test --url https://dispatch.example.com --repo acme/app --sha 1a2b3c --command 'make test'`,
}

var cmdLogs = command{
	name:    "logs",
	summary: "print an execution's logs (-f to follow until it ends)",
	usage: `With -f it follows until the execution ends and exits with its result: 0 success,
1 failure, 2 cancelled or timed out.

Examples:
  flare logs offload-test:cli-20261128T101500-1a2b3c
  flare logs -f EXECUTION_ID
  flare logs -f --json EXECUTION_ID | jq -r 'select(.type=="line") | .text'`,
}

func init() {
	cmdDispatch.run = runDispatch
	cmdLogs.run = runLogs
}

// clientFor finds the stack to talk to: --url with HMAC_SECRET, else flare up's lock.
func clientFor(url, data string) (*stackClient, error) {
	if url != "" {
		secret := envOr("HMAC_SECRET", "")
		if _, err := os.Stat(local.SecretsPath(data)); secret == "" && err == nil {
			if sec, err := local.LoadSecrets(data, os.Getenv); err == nil {
				secret = sec.HMACSecret
			}
		}
		if secret == "" {
			return nil, fmt.Errorf("HMAC_SECRET is not set")
		}
		return &stackClient{url: strings.TrimRight(url, "/"), secret: secret, http: &http.Client{Timeout: 30 * time.Second}}, nil
	}
	c, ok := findRunningStack(data)
	if !ok {
		return nil, fmt.Errorf("no running stack under %s: start one with `flare up` or pass --url", data)
	}
	return c, nil
}

func runDispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdDispatch, stderr)
	f := addDispatchFlags(fs)
	url := fs.String("url", envOr("FLARE_URL", ""), "dispatcher URL (default: the running flare up)")
	wait := fs.Bool("wait", false, "follow the execution and exit with its result (0 success, 1 failure, 2 cancelled/timed out)")
	timeout := fs.Duration("timeout", 2*time.Hour, "with --wait: stop waiting after this long (exit 2)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return exitUsage
	}
	run := args[0]
	if code, ok := parse(fs, args[1:]); !ok {
		return code
	}
	c, err := clientFor(*url, f.data)
	if err != nil {
		fmt.Fprintln(stderr, "flare dispatch:", err)
		return exitUsage
	}
	body, err := f.envelope(run)
	if err != nil {
		fmt.Fprintln(stderr, "flare dispatch:", err)
		return exitUsage
	}
	res, status, err := c.dispatch(ctx, body, f.key)
	if err != nil {
		fmt.Fprintln(stderr, "flare dispatch:", err)
		return exitTrouble
	}
	if status != http.StatusAccepted {
		fmt.Fprintln(stderr, "flare dispatch:", describeDispatchError(res, status, c.secret))
		return exitUsage
	}
	if !*wait {
		if f.jsonOut {
			_ = json.NewEncoder(stdout).Encode(res)
			return exitOK
		}
		fmt.Fprintln(stdout, res.ExecutionID)
	}
	note := ""
	if res.Deduped {
		note = " (already dispatched: same execution)"
	}
	fmt.Fprintf(stderr, "%s\nlogs: %s%s\n", res.ExecutionID, res.link(), note)
	if !*wait {
		return exitOK
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	v, err := c.follow(wctx, res.ExecutionID, f.live(stderr))
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		fmt.Fprintf(stderr, "flare dispatch: stopped waiting after %s (--timeout); execution %s is still %s: flare logs -f %s\n",
			*timeout, res.ExecutionID, v.Execution.Status, res.ExecutionID)
		return exitCancelled
	}
	if err != nil {
		fmt.Fprintln(stderr, "flare dispatch: following", res.ExecutionID+":", err)
		return exitTrouble
	}
	return printResult(stdout, v, res.link(), time.Since(start), f, "")
}

func runLogs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdLogs, stderr)
	follow := fs.Bool("f", false, "follow until the execution ends: lines as they are written, a fan-out's shards prefixed")
	asJSON := fs.Bool("json", false, "with -f: NDJSON events (line, step, status, end) on stdout")
	quiet := fs.Bool("quiet", false, "with -f: print only the final status line (stderr); the exit code is the result")
	data := fs.String("data", envOr("FLARE_DATA", ".flare"), "state directory")
	url := fs.String("url", envOr("FLARE_URL", ""), "dispatcher URL (default: the running flare up)")
	// Accept the id before or after the flags.
	var id string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		id, args = args[0], args[1:]
	}
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if id == "" && fs.NArg() > 0 { // flags, the id, then maybe more flags
		id = fs.Arg(0)
		if code, ok := parse(fs, fs.Args()[1:]); !ok {
			return code
		}
	}
	if id == "" {
		fs.Usage()
		return exitUsage
	}
	c, err := clientFor(*url, *data)
	if err != nil {
		fmt.Fprintln(stderr, "flare logs:", err)
		return exitUsage
	}
	if !*follow {
		text, err := c.logsText(ctx, id)
		if err != nil {
			fmt.Fprintln(stderr, "flare logs:", err)
			return exitTrouble
		}
		fmt.Fprint(stdout, text)
		return exitOK
	}
	// -f: the lines as they are written (the log viewer's event stream), a fan-out's
	// children prefixed with their keys, then one status line.
	opts := watchOpts{out: stdout, json: *asJSON}
	if *quiet {
		opts = watchOpts{}
	}
	start := time.Now()
	v, err := c.follow(ctx, id, opts)
	if err != nil {
		if ctx.Err() != nil {
			return exitCancelled
		}
		fmt.Fprintln(stderr, "flare logs:", err)
		return exitTrouble
	}
	conclusion := v.conclusion()
	link := c.url + "/logs/" + id + "?t=" + edge.LogToken(edge.Config{HMACSecret: c.secret}, id)
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(map[string]any{"type": "end", "executionId": id, "status": v.Execution.Status,
			"conclusion": conclusion, "logsUrl": link})
	} else {
		fmt.Fprintln(stderr, statusLine(conclusion, v.Execution.Run, id, time.Since(start), link))
	}
	return exitFor(conclusion)
}
