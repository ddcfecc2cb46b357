// Package sandboximages holds the sandbox images' Dockerfiles (lean, chromium) and the
// test that checks what they install against Debian's package index. There is no
// Docker engine where the tests run; sandbox-images/check.sh builds the agent the way
// the Dockerfiles do.
package sandboximages
