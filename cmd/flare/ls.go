package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
	"github.com/flare-dispatch/flare-dispatch/edge/local"
)

var cmdLs = command{
	name:    "ls",
	summary: "list executions, newest first (GET /v1/executions, with ADMIN_TOKEN)",
	usage: `Reads the running 'flare up' under --data (its ADMIN_TOKEN), or --url with ADMIN_TOKEN set.

Examples:
  flare ls
  flare ls --run offload-test --status failure --limit 20
  flare ls --repo acme/app --all --json
  ADMIN_TOKEN=... flare ls --url https://flare-dispatch.acme.workers.dev`,
}

func init() { cmdLs.run = runLs }

// listedExecution is one item of GET /v1/executions (contract §3): the execution's
// row as the API shows it, its log link, and its cost once it has one.
type listedExecution struct {
	edge.Execution
	LogsURL string     `json:"logsUrl,omitempty"`
	Cost    *edge.Cost `json:"cost,omitempty"`
}

type executionPage struct {
	Executions []listedExecution `json:"executions"`
	NextBefore *int64            `json:"nextBefore"`
}

func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags(cmdLs, stderr)
	run := fs.String("run", "", "only this run")
	repo := fs.String("repo", "", "only this repository (owner/name)")
	status := fs.String("status", "", "only this status (queued, running, success, failure, cancelled, timed_out, …)")
	limit := fs.Int("limit", 50, "at most this many (1..200 per page)")
	all := fs.Bool("all", false, "follow nextBefore to the end")
	jsonOut := fs.Bool("json", false, "print the executions as JSON")
	data := fs.String("data", envOr("FLARE_DATA", ".flare"), "state directory")
	base := fs.String("url", envOr("FLARE_URL", ""), "dispatcher URL (default: the running flare up)")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	c, err := clientFor(*base, *data)
	if err != nil && *base == "" {
		fmt.Fprintln(stderr, "flare ls:", err)
		return exitUsage
	}
	target := *base
	if c != nil {
		target = c.url
	}
	token := os.Getenv("ADMIN_TOKEN")
	if token == "" {
		if sec, err := local.LoadSecrets(*data, func(string) string { return "" }); err == nil {
			token = sec.AdminToken
		}
	}
	if token == "" {
		fmt.Fprintln(stderr, "flare ls: ADMIN_TOKEN is not set")
		return exitUsage
	}
	var items []listedExecution
	var before int64
	for {
		q := url.Values{}
		for k, v := range map[string]string{"run": *run, "repo": *repo, "status": *status} {
			if v != "" {
				q.Set(k, v)
			}
		}
		page := *limit - len(items)
		if *all {
			page = 200
		}
		q.Set("limit", strconv.Itoa(min(max(page, 1), 200)))
		if before > 0 {
			q.Set("before", strconv.FormatInt(before, 10))
		}
		var p executionPage
		if err := getAdmin(ctx, strings.TrimRight(target, "/")+"/v1/executions?"+q.Encode(), token, &p); err != nil {
			fmt.Fprintln(stderr, "flare ls:", err)
			return exitTrouble
		}
		items = append(items, p.Executions...)
		if p.NextBefore == nil || len(p.Executions) == 0 || (!*all && len(items) >= *limit) {
			break
		}
		before = *p.NextBefore
	}
	if *jsonOut {
		_ = json.NewEncoder(stdout).Encode(items)
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXECUTION\tRUN\tREPO\tSTATUS\tSTARTED\tDURATION\tCOST\tGITHUB RUNNER")
	for _, e := range items {
		took := "-"
		if !e.CompletedAt.IsZero() {
			took = e.CompletedAt.Sub(e.StartedAt).Round(time.Millisecond).String()
		}
		cost, gh := "-", "-"
		if e.Cost != nil { // Cloudflare list price, and the same time on a GitHub-hosted runner (specs/cost.md)
			cost, gh = edge.USD(e.Cost.CloudflareMicro), edge.USD(e.Cost.GitHubMicro)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Run, e.Repo, e.Status, e.StartedAt.Local().Format("2006-01-02 15:04:05"), took, cost, gh)
	}
	_ = tw.Flush()
	return exitOK
}

func getAdmin(ctx context.Context, u, token string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.Unmarshal(b, into)
}
