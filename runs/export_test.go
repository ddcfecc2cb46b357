package runs

// DemoStepTimeout exposes playwright-demo's step timeout to the tests.
var DemoStepTimeout = demoStepTimeout

// ParsePlaywrightJSON exposes the JSON report reader to the tests.
func ParsePlaywrightJSON(raw []byte, dir string) (PlaywrightTests, []PlaywrightFailure, []string, string) {
	p := parsePlaywrightJSON(raw, dir)
	return p.Tests, p.Failures, p.Flaky, p.Error
}
