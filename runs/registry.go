// Package runs holds the run programs, one file per run, each a typed program on dsl.
package runs

import "github.com/flare-dispatch/flare-dispatch/dsl"

// Registry returns the runs that exist.
func Registry() dsl.Registry {
	return dsl.NewRegistry(
		OffloadTest,
		MatrixFanout,
		DeploySmoke,
		RefreshFixtures,
		CDPAcceptance,
		PlaywrightE2E,
		PlaywrightDemo,
		ProductDemo,
		PRReview,
		CITriagePR,
		SpecDriftPR,
	)
}
