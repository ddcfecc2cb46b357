package edge

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/actors"
	"github.com/flare-dispatch/flare-dispatch/dsl"
)

// Cost on every check-run (specs/cost.md): what an execution used, priced at
// Cloudflare's list prices, next to what the same wall time would cost on a
// GitHub-hosted runner. The prices are one table, PriceTable, which specs/cost.md
// repeats with its date (a test holds the two equal).

// InstanceType is a Containers instance type: its size.
type InstanceType struct {
	Name   string
	VCPU   float64
	MemGiB float64
	DiskGB float64
}

// Prices are list prices in US dollars.
type Prices struct {
	Date              string // when they were read
	VCPUSecond        float64
	GiBSecond         float64 // memory
	DiskGBSecond      float64
	BrowserHour       float64 // Browser Rendering, past the included hours
	GitHubLinuxMinute float64 // GitHub-hosted standard Linux 2-core, per started minute
	Instances         []InstanceType
}

// PriceTable is the one price table (specs/cost.md).
var PriceTable = Prices{
	Date:              "2026-05-01",
	VCPUSecond:        0.000020,
	GiBSecond:         0.0000025,
	DiskGBSecond:      0.00000007,
	BrowserHour:       0.09,
	GitHubLinuxMinute: 0.008,
	Instances: []InstanceType{
		{"lite", 1.0 / 16, 0.25, 2},
		{"basic", 0.25, 1, 4},
		{"standard-1", 0.5, 4, 8},
		{"standard-2", 1, 6, 12},
		{"standard-3", 2, 8, 16},
		{"standard-4", 4, 12, 20},
	},
}

// DefaultInstanceType is wrangler.jsonc's instance type of both sandbox classes.
const DefaultInstanceType = "standard-2"

// Instance is the instance type called name, or false.
func (p Prices) Instance(name string) (InstanceType, bool) {
	for _, it := range p.Instances {
		if it.Name == name {
			return it, true
		}
	}
	return InstanceType{}, false
}

// Usage is what an execution used.
type Usage struct {
	InstanceType string
	Sandbox      time.Duration // wall time with a sandbox (leased or running)
	Browser      time.Duration // remote browser sessions (/v1/browser/cdp)
	Model        ModelUsage
}

// Cost is an execution's usage priced; amounts are micro-dollars (1e-6 USD).
type Cost struct {
	InstanceType     string  `json:"instanceType"`
	SandboxSeconds   float64 `json:"sandboxSeconds"`
	VCPUSeconds      float64 `json:"vcpuSeconds"`
	MemoryGiBSeconds float64 `json:"memoryGiBSeconds"`
	DiskGBSeconds    float64 `json:"diskGBSeconds"`
	BrowserSeconds   float64 `json:"browserSeconds"`
	ModelTokens      int     `json:"modelTokens"`
	ModelUnpriced    bool    `json:"modelUnpriced,omitempty"` // tokens of models MODEL_PRICES does not list
	ContainerMicro   int64   `json:"containerMicroUsd"`
	BrowserMicro     int64   `json:"browserMicroUsd"`
	ModelMicro       int64   `json:"modelMicroUsd"`
	CloudflareMicro  int64   `json:"cloudflareMicroUsd"`
	// GitHubMinutes are the runner minutes the same wall time bills: each job (this
	// execution, and each child of a fan-out) rounded up to a whole minute.
	GitHubMinutes int    `json:"githubMinutes"`
	GitHubMicro   int64  `json:"githubMicroUsd"`
	Children      int    `json:"children,omitempty"`
	PriceDate     string `json:"priceDate"`
}

func micro(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

// Price prices one execution's usage.
func (p Prices) Price(u Usage) Cost {
	it, ok := p.Instance(u.InstanceType)
	if !ok {
		it, _ = p.Instance(DefaultInstanceType)
	}
	sec := u.Sandbox.Seconds()
	c := Cost{InstanceType: it.Name, SandboxSeconds: round1(sec), VCPUSeconds: round1(sec * it.VCPU),
		MemoryGiBSeconds: round1(sec * it.MemGiB), DiskGBSeconds: round1(sec * it.DiskGB),
		BrowserSeconds: round1(u.Browser.Seconds()), ModelTokens: u.Model.InputTokens + u.Model.OutputTokens,
		ModelMicro: u.Model.CostMicroUSD, PriceDate: p.Date}
	c.ModelUnpriced = c.ModelTokens > 0 && u.Model.CostMicroUSD == 0
	c.ContainerMicro = micro(sec*it.VCPU*p.VCPUSecond + sec*it.MemGiB*p.GiBSecond + sec*it.DiskGB*p.DiskGBSecond)
	c.BrowserMicro = micro(u.Browser.Hours() * p.BrowserHour)
	c.CloudflareMicro = c.ContainerMicro + c.BrowserMicro + c.ModelMicro
	if u.Sandbox > 0 {
		c.GitHubMinutes = int(math.Ceil(u.Sandbox.Minutes()))
	}
	c.GitHubMicro = micro(float64(c.GitHubMinutes) * p.GitHubLinuxMinute)
	return c
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// Add folds a child execution's cost into its parent's.
func (c *Cost) Add(o Cost) {
	c.SandboxSeconds = round1(c.SandboxSeconds + o.SandboxSeconds)
	c.VCPUSeconds = round1(c.VCPUSeconds + o.VCPUSeconds)
	c.MemoryGiBSeconds = round1(c.MemoryGiBSeconds + o.MemoryGiBSeconds)
	c.DiskGBSeconds = round1(c.DiskGBSeconds + o.DiskGBSeconds)
	c.BrowserSeconds = round1(c.BrowserSeconds + o.BrowserSeconds)
	c.ModelTokens += o.ModelTokens
	c.ModelUnpriced = c.ModelUnpriced || o.ModelUnpriced
	c.ContainerMicro += o.ContainerMicro
	c.BrowserMicro += o.BrowserMicro
	c.ModelMicro += o.ModelMicro
	c.CloudflareMicro += o.CloudflareMicro
	c.GitHubMinutes += o.GitHubMinutes
	c.GitHubMicro += o.GitHubMicro
	c.Children++
}

// USD formats micro-dollars for people: four decimals below a dollar.
func USD(m int64) string {
	if m >= 1_000_000 || m <= -1_000_000 {
		return "$" + strconv.FormatFloat(float64(m)/1e6, 'f', 2, 64)
	}
	return "$" + strconv.FormatFloat(float64(m)/1e6, 'f', 4, 64)
}

// Markdown is the cost line of a check-run.
func (c Cost) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Cost** ≈ %s on Cloudflare: %s × %s (%.0f vCPU-s, %.0f GiB-s, %.0f GB-s disk) %s",
		USD(c.CloudflareMicro), c.InstanceType, fmtSeconds(c.SandboxSeconds), c.VCPUSeconds, c.MemoryGiBSeconds, c.DiskGBSeconds, USD(c.ContainerMicro))
	if c.BrowserSeconds > 0 {
		fmt.Fprintf(&b, "; browser %s %s", fmtSeconds(c.BrowserSeconds), USD(c.BrowserMicro))
	}
	if c.ModelTokens > 0 {
		if c.ModelUnpriced {
			fmt.Fprintf(&b, "; model %d tokens (partly unpriced: MODEL_PRICES) %s", c.ModelTokens, USD(c.ModelMicro))
		} else {
			fmt.Fprintf(&b, "; model %d tokens %s", c.ModelTokens, USD(c.ModelMicro))
		}
	}
	if c.Children > 0 {
		fmt.Fprintf(&b, "; with %d child executions", c.Children)
	}
	fmt.Fprintf(&b, ". The same wall time on a GitHub-hosted Linux runner: %d min × %s = %s. List prices of %s before free allowances (specs/cost.md).",
		c.GitHubMinutes, USD(micro(PriceTable.GitHubLinuxMinute)), USD(c.GitHubMicro), c.PriceDate)
	return b.String()
}

func fmtSeconds(s float64) string {
	return (time.Duration(s*10) * time.Second / 10).String()
}

// sandboxClock is KV sandbox-clock/<exec>: when the execution's current sandbox spell
// began (0: none) and the time of the spells that ended. A spell starts at leased or
// running and ends at waiting or the end; a repeated Progress changes nothing.
type sandboxClock struct {
	Since int64 `json:"since,omitempty"` // unix ms
	Ms    int64 `json:"ms"`
}

func sandboxClockKey(exec string) string { return "sandbox-clock/" + exec }

// tickSandboxClock moves the clock with a Progress and returns the time so far.
func (s *Server) tickSandboxClock(ctx context.Context, p actors.Progress) (time.Duration, error) {
	var c sandboxClock
	if v, found, err := s.KV.Get(ctx, sandboxClockKey(p.Exec)); err != nil {
		return 0, err
	} else if found {
		_ = json.Unmarshal([]byte(v), &c)
	}
	before := c
	at := p.At.UnixMilli()
	switch {
	case p.Status == actors.StatusLeased || p.Status == actors.StatusRunning:
		if c.Since == 0 {
			c.Since = at
		}
	case p.Status == actors.StatusWaiting || p.Status.Terminal():
		if c.Since != 0 {
			c.Ms += max(at-c.Since, 0)
			c.Since = 0
		}
	}
	if c != before {
		b, _ := json.Marshal(c)
		if err := s.KV.Put(ctx, sandboxClockKey(p.Exec), string(b), 0); err != nil {
			return 0, err
		}
	}
	return time.Duration(c.Ms) * time.Millisecond, nil
}

func browserTimeKey(exec string) string { return "browser-ms/" + exec }

// addBrowserTime adds a remote browser session's length to an execution's usage.
func (s *Server) addBrowserTime(ctx context.Context, exec string, d time.Duration) {
	usageMu.Lock()
	defer usageMu.Unlock()
	var ms int64
	if v, found, err := s.KV.Get(ctx, browserTimeKey(exec)); err == nil && found {
		ms, _ = strconv.ParseInt(v, 10, 64)
	}
	if err := s.KV.Put(ctx, browserTimeKey(exec), strconv.FormatInt(ms+d.Milliseconds(), 10), 0); err != nil {
		s.Log.Warn("browser time not recorded", "execution", exec, "err", err)
	}
}

// executionCost prices a terminal execution, adds its children's costs (a fan-out
// parent's check-run shows the whole group), and records it for the dashboard.
func (s *Server) executionCost(ctx context.Context, ex Execution, sandbox time.Duration) (Cost, error) {
	u := Usage{InstanceType: s.instanceType(ex.Run), Sandbox: sandbox}
	if v, found, err := s.KV.Get(ctx, browserTimeKey(ex.ID)); err == nil && found {
		ms, _ := strconv.ParseInt(v, 10, 64)
		u.Browser = time.Duration(ms) * time.Millisecond
	}
	u.Model, _ = s.Usage(ctx, ex.ID)
	c := PriceTable.Price(u)
	if g, found, err := s.childGroup(ctx, ex.ID); err == nil && found && len(g.Children) > 0 {
		kids, err := s.Meta.ListExecutions(ctx, ExecutionFilter{Parent: ex.ID, Limit: len(g.Children) + 1})
		if err != nil {
			return c, err
		}
		for _, k := range kids {
			if k.Cost != nil {
				c.Add(*k.Cost)
			}
		}
	}
	return c, s.Meta.PutCost(ctx, ex.ID, c)
}

// instanceType is the instance type of a run's sandbox: SANDBOX_INSTANCE_TYPES names
// one per pool ("lean=standard-2,browser=standard-3"), else wrangler.jsonc's.
func (s *Server) instanceType(run string) string {
	pool := dsl.PoolLean
	if r, ok := s.Runs[run]; ok && r.Spec().Pool != "" {
		pool = r.Spec().Pool
	}
	if t := s.instanceTypes[pool]; t != "" {
		return t
	}
	return DefaultInstanceType
}

// ParseInstanceTypes reads SANDBOX_INSTANCE_TYPES; an unknown type is an error naming it.
func ParseInstanceTypes(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range SplitList(s) {
		pool, typ, ok := strings.Cut(item, "=")
		if !ok || pool == "" {
			return nil, fmt.Errorf("SANDBOX_INSTANCE_TYPES: %q is not pool=instance-type", item)
		}
		if _, known := PriceTable.Instance(typ); !known {
			return nil, fmt.Errorf("SANDBOX_INSTANCE_TYPES: %q is not a Containers instance type (lite, basic, standard-1 … standard-4)", typ)
		}
		out[pool] = typ
	}
	return out, nil
}

// CostFilter selects the dashboard's totals.
type CostFilter struct {
	Repo  string    // "" = every repository
	Since time.Time // started at or after; zero = no bound
}

// CostTotal is the dashboard's sum of one repository's executions in one month.
type CostTotal struct {
	Repo            string
	Month           string // YYYY-MM (UTC, by start)
	Executions      int
	CloudflareMicro int64
	GitHubMicro     int64
}
