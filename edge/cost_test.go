package edge_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/edge"
)

// TestPriceRoundsGitHubMinutesUp: 61 s on standard-2 is 61 vCPU-s, 366 GiB-s and
// 732 GB-s on Cloudflare, and two started minutes on a GitHub-hosted runner.
func TestPriceRoundsGitHubMinutesUp(t *testing.T) {
	c := edge.PriceTable.Price(edge.Usage{InstanceType: "standard-2", Sandbox: 61 * time.Second, Browser: 30 * time.Minute,
		Model: edge.ModelUsage{InputTokens: 1000, OutputTokens: 200, CostMicroUSD: 4200}})
	// 61×0.00002 + 366×0.0000025 + 732×0.00000007 = 0.00122 + 0.000915 + 0.00005124
	if c.VCPUSeconds != 61 || c.MemoryGiBSeconds != 366 || c.DiskGBSeconds != 732 || c.ContainerMicro != 2186 {
		t.Fatalf("container: %+v", c)
	}
	if c.BrowserMicro != 45000 || c.ModelMicro != 4200 || c.ModelTokens != 1200 || c.CloudflareMicro != 2186+45000+4200 {
		t.Fatalf("browser and model: %+v", c)
	}
	if c.GitHubMinutes != 2 || c.GitHubMicro != 16000 {
		t.Fatalf("GitHub: %d min %d µ$", c.GitHubMinutes, c.GitHubMicro)
	}
	if z := edge.PriceTable.Price(edge.Usage{}); z.GitHubMinutes != 0 || z.CloudflareMicro != 0 || z.InstanceType != edge.DefaultInstanceType {
		t.Fatalf("no usage: %+v", z)
	}
}

// TestCheckRunCarriesTheCostOfTheSandboxTime drives the projection with the run
// actor's progress: the sandbox time runs from leased to the end and stops while the
// run waits (fails without tickSandboxClock's waiting case: 150 s, three minutes).
func TestCheckRunCarriesTheCostOfTheSandboxTime(t *testing.T) {
	meta, kv := newMeta(), newKV()
	s := edge.New(edge.Deps{Config: edge.Config{HMACSecret: "k", InstanceTypes: "lean=standard-1"}, Actors: newActors(), Meta: meta, KV: kv})
	exec := "offload-test:acme-app:abc"
	in, _ := json.Marshal(edge.Params{Exec: exec, Run: "offload-test", Repo: "acme/app", SHA: "abc", Origin: "https://d.example"})
	meta.CreateExecution(context.Background(), edge.Execution{ID: exec, Run: "offload-test", Repo: "acme/app", Status: "queued", Input: in})
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, p := range []struct {
		st actors.Status
		at time.Duration
	}{{actors.StatusQueued, 0}, {actors.StatusLeased, 10 * time.Second}, {actors.StatusRunning, 15 * time.Second},
		{actors.StatusRunning, 20 * time.Second}, // repeated after a restart: changes nothing
		{actors.StatusWaiting, 40 * time.Second}, {actors.StatusLeased, 100 * time.Second}, {actors.StatusSuccess, 130 * time.Second}} {
		s.Perform(context.Background(), actors.RunAddr(exec), actors.Progress{Exec: exec, Status: p.st, At: t0.Add(p.at)})
	}
	var report edge.CheckReport
	json.Unmarshal([]byte(kv.get("check-run/"+exec)), &report)
	want := "standard-1 × 1m0s (30 vCPU-s, 240 GiB-s, 480 GB-s disk)"
	if !strings.Contains(report.Summary, want) || !strings.Contains(report.Summary, "1 min × $0.0080 = $0.0080") {
		t.Fatalf("summary lacks %q and the GitHub line:\n%s", want, report.Summary)
	}
	if c := meta.costs[exec]; c.SandboxSeconds != 60 || c.InstanceType != "standard-1" {
		t.Fatalf("recorded cost %+v", c)
	}
}

// TestSpecsCostTableIsThePriceTable: specs/cost.md and PriceTable say the same.
func TestSpecsCostTableIsThePriceTable(t *testing.T) {
	b, err := os.ReadFile("../specs/cost.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	p := edge.PriceTable
	for _, want := range []string{"Prices read " + p.Date,
		"| vCPU-second | " + strconv.FormatFloat(p.VCPUSecond, 'f', -1, 64) + " |",
		"| GiB-second (memory) | " + strconv.FormatFloat(p.GiBSecond, 'f', -1, 64) + " |",
		"| GB-second (disk) | " + strconv.FormatFloat(p.DiskGBSecond, 'f', -1, 64) + " |",
		"| browser-hour | " + strconv.FormatFloat(p.BrowserHour, 'f', -1, 64) + " |",
		"| GitHub-hosted Linux 2-core minute | " + strconv.FormatFloat(p.GitHubLinuxMinute, 'f', -1, 64) + " |"} {
		if !strings.Contains(doc, want) {
			t.Errorf("specs/cost.md lacks %q", want)
		}
	}
	for _, it := range p.Instances {
		row := "| " + it.Name + " | " + strconv.FormatFloat(it.VCPU, 'f', -1, 64) + " | " + strconv.FormatFloat(it.MemGiB, 'f', -1, 64) + " | " + strconv.FormatFloat(it.DiskGB, 'f', -1, 64) + " |"
		if !strings.Contains(doc, row) {
			t.Errorf("specs/cost.md lacks the row %q", row)
		}
	}
}

func TestInstanceTypesNameTheBadEntry(t *testing.T) {
	if _, err := edge.ParseInstanceTypes("lean=standard-2,browser=huge-9"); err == nil || !strings.Contains(err.Error(), "huge-9") {
		t.Fatalf("err %v", err)
	}
	if m, err := edge.ParseInstanceTypes("lean=basic browser=standard-4"); err != nil || m["lean"] != "basic" || m["browser"] != "standard-4" {
		t.Fatalf("%v %v", m, err)
	}
}
