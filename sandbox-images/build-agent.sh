#!/bin/sh
# Builds the agent binary (`flare`, whose `flare agent` is every sandbox's entrypoint)
# statically, the one way both sandbox images and CI build it:
#
#   sandbox-images/build-agent.sh OUT     (from the repository root)
#
# CGO_ENABLED=0 gives a static binary that runs on any base image; -trimpath keeps the
# build machine's paths out of it. The script then checks that the result is static.
set -eu
out="${1:?usage: sandbox-images/build-agent.sh OUT}"
CGO_ENABLED=0 go build -trimpath -o "$out" ./cmd/flare
if ! go version -m "$out" | grep -q 'CGO_ENABLED=0'; then
	echo "build-agent: $out was not built with CGO_ENABLED=0" >&2
	exit 1
fi
# A dynamically linked ELF names its loader in a PT_INTERP program header.
if command -v readelf >/dev/null 2>&1 && readelf -l "$out" | grep -q 'INTERP'; then
	echo "build-agent: $out is dynamically linked" >&2
	exit 1
fi
echo "build-agent: $out is a static $(go env GOOS)/$(go env GOARCH) binary ($(wc -c <"$out") bytes)"
