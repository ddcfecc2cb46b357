package porttest

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"time"

	"github.com/flare-dispatch/flare-dispatch/edge"
)

// The Metadata contract: SQLite locally and D1 in the Worker (both edge/sqlmeta).
// Ids are unique per subtest (the prefix plus the case's name), so adapters may share
// one database between subtests and runs; steps need their execution to exist (D1 and
// local SQLite both enforce the foreign key).

// Metadata runs the contract; newMeta is called once per subtest with the id prefix.
func Metadata[R Runner[R]](t R, prefix string, newMeta func(t R) edge.Metadata) {
	run(t, withPrefix(metadataTests, prefix), newMeta)
}

var metadataTests = []test[edge.Metadata]{
	{"CreateInsertsOnceAndNeverOverwrites", createOnce},
	{"ExecutionRoundTripsEveryColumn", executionRoundTrip},
	{"AbsentExecutionIsErrNotFound", absentExecution},
	{"UpdateLeavesZeroFieldsAlone", updateKeeps},
	{"UpdateOfAnAbsentExecutionCreatesNothing", updateAbsent},
	{"ReopenClearsCompletionAndSummaryKeepsTheRest", reopen},
	{"PutStepUpsertsAndKeepsTheFirstStart", putStepUpserts},
	{"StepsAreTheExecutionsInStartOrder", stepsOrdered},
	{"PriorExecutionIsTheNewestFinishedOfTheFamily", priorExecution},
	{"ListingCarriesFirstStepAndCostAndFiltersByParent", listingWithCost},
	{"CostTotalsArePerRepoAndMonthOfTopLevelExecutions", costTotals},
}

// withPrefix hands each case its own id prefix through a closure.
func withPrefix[P any](tests []test[P], prefix string) []test[P] {
	out := make([]test[P], len(tests))
	for i, tc := range tests {
		id := prefix + tc.name + "-" + time.Now().UTC().Format("150405.000000000")
		f := tc.f
		out[i] = test[P]{tc.name, func(t T, p P) { f(prefixedT{t, id}, p) }}
	}
	return out
}

// prefixedT carries the case's id prefix to the case.
type prefixedT struct {
	T
	id string
}

func idOf(t T) string { return t.(prefixedT).id }

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func execution(id string) edge.Execution {
	return edge.Execution{ID: id, Run: "hello", Repo: "acme/web", Ref: "refs/heads/main", SHA: "0123abcd",
		Status: "queued", StartedAt: at, Input: json.RawMessage(`{"n":1}`)}
}

func mustCreate(t T, m edge.Metadata, e edge.Execution) {
	t.Helper()
	if created, err := m.CreateExecution(ctx, e); err != nil || !created {
		t.Fatalf("create %s: created %v, %v", e.ID, created, err)
	}
}

func mustExecution(t T, m edge.Metadata, id string) edge.Execution {
	t.Helper()
	e, err := m.Execution(ctx, id)
	if err != nil {
		t.Fatalf("execution %s: %v", id, err)
	}
	return e
}

// reopen: a row ended because its start failed, then started by a retry (edge.Start).
func reopen(t T, m edge.Metadata) {
	e := execution(idOf(t))
	mustCreate(t, m, e)
	if err := m.UpdateExecution(ctx, edge.Execution{ID: e.ID, Status: "failure", CompletedAt: at.Add(time.Second),
		Summary: json.RawMessage(`{"failure":{"tag":"StartFailed"}}`), CheckRunID: 7}); err != nil {
		t.Fatal(err)
	}
	if err := m.ReopenExecution(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	got := mustExecution(t, m, e.ID)
	if got.Status != "queued" || !got.CompletedAt.IsZero() || got.Summary != nil {
		t.Fatalf("reopened: status %q, completed %v, summary %s; want queued, none, none", got.Status, got.CompletedAt, got.Summary)
	}
	if got.CheckRunID != 7 || got.Run != e.Run || !got.StartedAt.Equal(e.StartedAt) || string(got.Input) != string(e.Input) {
		t.Fatalf("reopen changed other columns: %+v", got)
	}
}

func createOnce(t T, m edge.Metadata) {
	e := execution(idOf(t))
	mustCreate(t, m, e)
	again := e
	again.Status, again.Run = "running", "other"
	if created, err := m.CreateExecution(ctx, again); err != nil || created {
		t.Fatalf("second create: created %v, %v; want false, nil", created, err)
	}
	if got := mustExecution(t, m, e.ID); got.Status != "queued" || got.Run != "hello" {
		t.Fatalf("second create overwrote the row: %+v", got)
	}
}

func executionRoundTrip(t T, m edge.Metadata) {
	id := idOf(t)
	mustCreate(t, m, execution(id+"-parent"))
	e := execution(id)
	e.Parent = id + "-parent"
	e.StartedAt = at.Add(123 * time.Millisecond)
	mustCreate(t, m, e)
	got := mustExecution(t, m, id)
	if !got.StartedAt.Equal(e.StartedAt) || got.StartedAt.Location() != time.UTC {
		t.Errorf("started %s, want %s in UTC", got.StartedAt, e.StartedAt)
	}
	if got.ID != id || got.Run != e.Run || got.Repo != e.Repo || got.Ref != e.Ref || got.SHA != e.SHA ||
		got.Status != "queued" || got.Parent != e.Parent || string(got.Input) != `{"n":1}` ||
		!got.CompletedAt.IsZero() || got.Summary != nil || got.CheckRunID != 0 {
		t.Errorf("read back %+v\nwant %+v", got, e)
	}
	// No parent reads back as "", not as a NULL's text.
	if p := mustExecution(t, m, id+"-parent").Parent; p != "" {
		t.Errorf("parent of a root execution %q", p)
	}
}

func absentExecution(t T, m edge.Metadata) {
	if _, err := m.Execution(ctx, idOf(t)); !errors.Is(err, edge.ErrNotFound) {
		t.Fatalf("absent execution: %v, want ErrNotFound", err)
	}
}

func updateKeeps(t T, m edge.Metadata) {
	id := idOf(t)
	mustCreate(t, m, execution(id))
	done := at.Add(90 * time.Second)
	for i, u := range []edge.Execution{
		{ID: id, Status: "running"},
		{ID: id, CheckRunID: 1 << 40}, // larger than 32 bits
		{ID: id, Status: "success", CompletedAt: done, Summary: json.RawMessage(`{"ok":true}`)},
		{ID: id}, // nothing to change
	} {
		if err := m.UpdateExecution(ctx, u); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	got := mustExecution(t, m, id)
	if got.Status != "success" || !got.CompletedAt.Equal(done) || string(got.Summary) != `{"ok":true}` ||
		got.CheckRunID != 1<<40 || got.Run != "hello" || !got.StartedAt.Equal(at) || string(got.Input) != `{"n":1}` {
		t.Fatalf("after updates %+v", got)
	}
}

func updateAbsent(t T, m edge.Metadata) {
	if err := m.UpdateExecution(ctx, edge.Execution{ID: idOf(t), Status: "running"}); err != nil {
		t.Fatalf("update of an absent execution: %v", err)
	}
	if _, err := m.Execution(ctx, idOf(t)); !errors.Is(err, edge.ErrNotFound) {
		t.Fatalf("update created a row: %v", err)
	}
}

func putStepUpserts(t T, m edge.Metadata) {
	id := idOf(t)
	mustCreate(t, m, execution(id))
	first := edge.StepRow{Exec: id, Name: "build", Status: "running", Attempt: 1, StartedAt: at.Add(time.Second)}
	zero, tag := 0, "ExecFailed"
	for _, s := range []edge.StepRow{
		first,
		// A later attempt restarts the step: its start does not replace the first.
		{Exec: id, Name: "build", Status: "running", Attempt: 2, StartedAt: at.Add(time.Minute)},
		{Exec: id, Name: "build", Status: "failure", Attempt: 2, StartedAt: at.Add(time.Minute),
			CompletedAt: at.Add(2 * time.Minute), ExitCode: &zero, ErrorTag: tag},
	} {
		if err := m.PutStep(ctx, s); err != nil {
			t.Fatalf("put step: %v", err)
		}
	}
	steps, err := m.Steps(ctx, id)
	if err != nil || len(steps) != 1 {
		t.Fatalf("steps %+v, %v; want one row per (execution, step)", steps, err)
	}
	want := edge.StepRow{Exec: id, Name: "build", Status: "failure", Attempt: 2, StartedAt: first.StartedAt,
		CompletedAt: at.Add(2 * time.Minute), ExitCode: &zero, ErrorTag: tag}
	if got := steps[0]; !sameStep(got, want) {
		t.Fatalf("step %+v (exit %v)\nwant %+v (exit 0)", got, got.ExitCode, want)
	}
	// Unset exit code and tag read back as absent, not as zero values of the column.
	if err := m.PutStep(ctx, edge.StepRow{Exec: id, Name: "test", Status: "success", Attempt: 1, StartedAt: at.Add(3 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	steps, _ = m.Steps(ctx, id)
	if len(steps) != 2 || steps[1].ExitCode != nil || steps[1].ErrorTag != "" || !steps[1].CompletedAt.IsZero() {
		t.Fatalf("second step %+v", steps)
	}
}

func sameStep(a, b edge.StepRow) bool {
	if (a.ExitCode == nil) != (b.ExitCode == nil) || a.ExitCode != nil && *a.ExitCode != *b.ExitCode {
		return false
	}
	a.ExitCode, b.ExitCode = nil, nil
	return a.StartedAt.Equal(b.StartedAt) && a.CompletedAt.Equal(b.CompletedAt) &&
		reflect.DeepEqual(edge.StepRow{Exec: a.Exec, Name: a.Name, Status: a.Status, Attempt: a.Attempt, ErrorTag: a.ErrorTag},
			edge.StepRow{Exec: b.Exec, Name: b.Name, Status: b.Status, Attempt: b.Attempt, ErrorTag: b.ErrorTag})
}

func stepsOrdered(t T, m edge.Metadata) {
	id := idOf(t)
	mustCreate(t, m, execution(id))
	mustCreate(t, m, execution(id+"-other"))
	for _, s := range []edge.StepRow{
		{Exec: id, Name: "c", Status: "running", Attempt: 1, StartedAt: at.Add(2 * time.Second)},
		{Exec: id, Name: "b", Status: "success", Attempt: 1, StartedAt: at.Add(time.Second)},
		{Exec: id, Name: "a", Status: "success", Attempt: 1, StartedAt: at.Add(time.Second)},
		{Exec: id + "-other", Name: "x", Status: "running", Attempt: 1, StartedAt: at},
	} {
		if err := m.PutStep(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	steps, err := m.Steps(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range steps {
		names = append(names, s.Name)
		if s.Exec != id {
			t.Errorf("step %s of %q", s.Name, s.Exec)
		}
	}
	if !reflect.DeepEqual(names, []string{"a", "b", "c"}) {
		t.Fatalf("steps %v, want a b c (start order, then name)", names)
	}
	if none, err := m.Steps(ctx, id+"-none"); err != nil || len(none) != 0 {
		t.Fatalf("steps of an absent execution: %v, %v", none, err)
	}
}

// priorExecution holds adapters that also implement edge.PriorExecutions (both do).
func priorExecution(t T, m edge.Metadata) {
	pe, ok := m.(edge.PriorExecutions)
	if !ok {
		return
	}
	// A family longer than D1's 50-byte LIKE pattern limit, with LIKE's wildcards in
	// it: both must work (an adapter that used LIKE failed on D1 only).
	fam := idOf(t) + "%_fam-" + strings.Repeat("x", 50)
	for i, c := range []struct {
		id     string
		status string
		done   time.Duration // 0: not finished
	}{
		{fam + ":1", "success", time.Minute},
		{fam + ":2", "failure", 3 * time.Minute},
		{fam + ":3", "running", 0},
		{idOf(t) + "xxfam-" + strings.Repeat("x", 50) + ":9", "success", time.Hour}, // would match if % and _ were wildcards
		{fam + "x:4", "success", time.Hour},                                         // another family
	} {
		e := execution(c.id)
		mustCreate(t, m, e)
		if c.done > 0 {
			if err := m.UpdateExecution(ctx, edge.Execution{ID: c.id, Status: c.status, CompletedAt: at.Add(c.done),
				Summary: json.RawMessage(`{"i":` + string(rune('0'+i)) + `}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, ok, err := pe.PriorExecution(ctx, fam, fam+":3")
	if err != nil || !ok || got.ID != fam+":2" || got.Status != "failure" || !got.CompletedAt.Equal(at.Add(3*time.Minute)) || string(got.Summary) != `{"i":1}` {
		t.Fatalf("prior: %+v %v %v, want %s", got, ok, err, fam+":2")
	}
	// Excluding the newest finds the one before.
	if got, ok, err := pe.PriorExecution(ctx, fam, fam+":2"); err != nil || !ok || got.ID != fam+":1" {
		t.Fatalf("prior excluding :2: %+v %v %v", got, ok, err)
	}
	if _, ok, err := pe.PriorExecution(ctx, idOf(t)+"-nofamily", ""); err != nil || ok {
		t.Fatalf("prior of an empty family: %v %v", ok, err)
	}
}

func listingWithCost(t T, m edge.Metadata) {
	id := idOf(t)
	repo := "acme/" + strings.ReplaceAll(id, ":", "-")
	parent := execution(id)
	parent.Repo = repo
	mustCreate(t, m, parent)
	for i, k := range []string{":a", ":b"} {
		c := execution(id + k)
		c.Repo, c.Parent, c.StartedAt = repo, id, at.Add(time.Duration(i+1)*time.Second)
		mustCreate(t, m, c)
	}
	if err := m.PutStep(ctx, edge.StepRow{Exec: id + ":a", Name: "s", Status: "running", Attempt: 1, StartedAt: at.Add(5 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	cost := edge.Cost{InstanceType: "standard-2", SandboxSeconds: 61, CloudflareMicro: 1830, GitHubMicro: 16000, GitHubMinutes: 2}
	if err := m.PutCost(ctx, id+":a", edge.Cost{CloudflareMicro: 1}); err != nil {
		t.Fatal(err)
	}
	if err := m.PutCost(ctx, id+":a", cost); err != nil { // replaces
		t.Fatal(err)
	}
	kids, err := m.ListExecutions(ctx, edge.ExecutionFilter{Parent: id, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(kids) != 2 || kids[0].ID != id+":b" || kids[1].ID != id+":a" {
		t.Fatalf("children of %s: %+v", id, kids)
	}
	a := kids[1]
	if a.Cost == nil || !reflect.DeepEqual(*a.Cost, cost) || !a.FirstStepAt.Equal(at.Add(5*time.Second)) || a.Parent != id {
		t.Fatalf("listing of %s: cost %+v first step %s", a.ID, a.Cost, a.FirstStepAt)
	}
	if kids[0].Cost != nil || !kids[0].FirstStepAt.IsZero() || kids[0].Input != nil {
		t.Fatalf("listing of %s: %+v", kids[0].ID, kids[0])
	}
	// By commit (a check suite's executions): :b moved to another commit.
	b := execution(id + ":b-elsewhere")
	b.Repo, b.SHA = repo, strings.Repeat("e", 40)
	mustCreate(t, m, b)
	onSHA, err := m.ListExecutions(ctx, edge.ExecutionFilter{Repo: repo, SHA: parent.SHA, Limit: 10})
	if err != nil || len(onSHA) != 3 {
		t.Fatalf("executions of %s on %s: %+v %v", repo, parent.SHA, onSHA, err)
	}
	if other, err := m.ListExecutions(ctx, edge.ExecutionFilter{Repo: repo, SHA: b.SHA, Limit: 10}); err != nil || len(other) != 1 || other[0].ID != b.ID {
		t.Fatalf("executions of %s on %s: %+v %v", repo, b.SHA, other, err)
	}
}

func costTotals(t T, m edge.Metadata) {
	id := idOf(t)
	repo := "acme/" + strings.ReplaceAll(id, ":", "-")
	for _, c := range []struct {
		id, parent string
		start      time.Time
		cf, gh     int64
	}{
		{id + "-1", "", time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC), 100, 8000},
		{id + "-2", "", time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), 50, 8000},
		{id + "-3", "", time.Date(2026, 4, 1, 0, 0, 1, 0, time.UTC), 7, 16000},
		{id + "-3:k", id + "-3", time.Date(2026, 4, 1, 0, 0, 2, 0, time.UTC), 5, 8000}, // in its parent's cost
		{id + "-4", "", time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC), 0, 0},             // no cost recorded
	} {
		e := execution(c.id)
		e.Repo, e.Parent, e.StartedAt = repo, c.parent, c.start
		mustCreate(t, m, e)
		if c.cf > 0 {
			if err := m.PutCost(ctx, c.id, edge.Cost{CloudflareMicro: c.cf, GitHubMicro: c.gh}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := m.CostTotals(ctx, edge.CostFilter{Repo: repo})
	if err != nil {
		t.Fatal(err)
	}
	want := []edge.CostTotal{{Repo: repo, Month: "2026-04", Executions: 1, CloudflareMicro: 7, GitHubMicro: 16000},
		{Repo: repo, Month: "2026-03", Executions: 2, CloudflareMicro: 150, GitHubMicro: 16000}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("totals %+v\nwant %+v", got, want)
	}
}
