#!/bin/sh
# Pre-builds into a Go build cache what every Go run of an image would otherwise build
# cold in its fresh sandbox: the standard library compiled, plus the vet facts `go test`
# and `go vet` compute for every standard package a suite imports. The Go images run it
# at `docker build`; `flare up --fresh-sandbox` runs the same script (embedded in the
# binary) once per toolchain to model that image layer (specs/trust.md).
#
#   go-layer.sh GOCACHE_DIR
#
# It ends by listing the cache's entries in GOCACHE_DIR/.flare-image: the agent merges a
# restored toolchain cache over them and saves only the entries a run added.
set -eu
dir="${1:?usage: go-layer.sh GOCACHE_DIR}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export GOCACHE="$dir" GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on GOWORK=off
cd "$work"
# One package importing every importable standard package, with an empty test: its
# `go test` compiles them all and computes their vet facts with go test's vet flags,
# `go vet` with vet's own (the two are cached under different keys).
printf 'module flare.local/layer\n\ngo 1.21\n' >go.mod
{
	echo 'package layer'
	echo
	echo 'import ('
	go list -e -f '{{if .GoFiles}}{{.ImportPath}}{{end}}' std | grep -Ev '(^|/)internal(/|$)|^vendor/' | sed 's/.*/	_ "&"/'
	echo ')'
} >layer.go
printf 'package layer\n\nimport "testing"\n\nfunc TestLayer(t *testing.T) {}\n' >layer_test.go
go build std
go test -count=1 -run '^$' . >/dev/null
go vet .
cd "$dir"
find . -type f -name '*-[ad]' | sed 's|^\./||' | LC_ALL=C sort >.flare-image
echo "go-layer: $(wc -l <.flare-image) entries of $(go env GOVERSION) in $dir ($(du -sh . | cut -f1))"
