// Package browserruns holds the end-to-end tests of the browser runs (cdp-acceptance,
// playwright-e2e, playwright-demo, product-demo) on real parts: the agent's sandbox
// (real git checkouts and processes), its browser capability on Debian's chromium, its
// cache and artifacts on the embedded S3 store, and the edge's artifact route serving
// what they uploaded. Only the model is scripted. The package itself has the fixtures
// (testdata: a small web app, its acceptance script, a Playwright suite with its
// lockfile) and helpers the local stack's tests share.
package browserruns
