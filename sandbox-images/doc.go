// Package sandboximages holds the sandbox images' Dockerfiles (lean, chromium, go) and
// the test that checks what they install against Debian's package index. There is no
// Docker engine where the tests run; sandbox-images/check.sh builds the agent the way
// the Dockerfiles do, and build-local.sh (as root, with podman; not in CI) builds and
// checks the images themselves on local stand-ins of their bases.
//
// GoLayer is go-layer.sh, the step the Go image runs at `docker build` to pre-build the
// standard library into its build cache; the local stack runs the same script to model
// that image layer in a fresh sandbox.
package sandboximages

import _ "embed"

//go:embed go-layer.sh
var GoLayer string
