#!/usr/bin/env bash
# Builds the Cloudflare Worker: build/wasm_exec.js, build/app.wasm, and (unless
# --no-dry-run) a `wrangler deploy --dry-run` bundle in build/dist with its size.
#
#   worker/build.sh              build + dry run + size report
#   worker/build.sh --no-dry-run build only (what `wrangler dev` needs)
#   worker/build.sh --check      only check build/ against the current Go toolchain
#
# Environment: FLARE_GZIP_WARN_KIB (default 3072: the free plan's 3 MiB, the budget)
# warns above it; FLARE_GZIP_MAX_KIB (default 3906: 4 MB, never to be crossed) fails
# above it. The paid plan's limit is 10 MiB.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode="${1:-all}"

goroot="$(go env GOROOT)"
goversion="$(go env GOVERSION)"
wasm_exec="$goroot/lib/wasm/wasm_exec.js"

# build/toolchain.txt records which Go release built app.wasm (`go version` cannot
# read a wasm binary) and the hashes of the pair.
stamp() {
	echo "$goversion $(sha256sum build/wasm_exec.js | cut -c1-64) $(sha256sum build/app.wasm | cut -c1-64)"
}

check() {
	# wasm_exec.js must come from the Go release that built app.wasm.
	if ! cmp -s "$wasm_exec" build/wasm_exec.js; then
		echo "build/wasm_exec.js differs from $wasm_exec ($goversion): run worker/build.sh" >&2
		return 1
	fi
	if [ ! -f build/toolchain.txt ] || [ "$(cat build/toolchain.txt)" != "$(stamp)" ]; then
		echo "build/app.wasm was not built by $goversion with this wasm_exec.js ($(cat build/toolchain.txt 2>/dev/null | cut -d' ' -f1)): run worker/build.sh" >&2
		return 1
	fi
}

if [ "$mode" = "--check" ]; then
	check
	echo "build/ matches $goversion"
	exit 0
fi

mkdir -p build
# One build at a time: test packages (workertest, flare deploy's) build in parallel.
if command -v flock >/dev/null 2>&1; then
	exec 9>build/.lock
	flock 9
fi
# Files are replaced only when their bytes change: a running `wrangler dev` reloads the
# Worker (dropping requests in flight) whenever build/ is written.
replace() { # tmp dest
	if cmp -s "$1" "$2"; then rm -f "$1"; else mv -f "$1" "$2"; fi
}
cp "$wasm_exec" build/wasm_exec.js.tmp
replace build/wasm_exec.js.tmp build/wasm_exec.js
GOOS=js GOARCH=wasm go build -trimpath -o build/app.wasm.tmp ./edge/cloudflare/cmd/worker
replace build/app.wasm.tmp build/app.wasm
stamp >build/toolchain.txt.tmp
replace build/toolchain.txt.tmp build/toolchain.txt
check
raw=$(wc -c <build/app.wasm)
gz=$(gzip -9 -c build/app.wasm | wc -c)
printf 'build/app.wasm: %s (%d bytes), gzip -9 %d KiB\n' "$goversion" "$raw" $((gz / 1024))

[ "$mode" = "--no-dry-run" ] && exit 0

if [ ! -x worker/node_modules/.bin/wrangler ]; then
	echo "worker/node_modules is missing: run (cd worker && npm ci)" >&2
	exit 1
fi
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false CLOUDFLARE_CF_FETCH_ENABLED=false
rm -rf build/dist
out="$(cd worker && npx --no-install wrangler deploy --dry-run --config ../wrangler.jsonc --outdir "$root/build/dist" 2>&1)" || {
	echo "$out" >&2
	exit 1
}
line="$(grep -m1 'Total Upload' <<<"$out" || true)"
echo "wrangler deploy --dry-run: ${line:-no size line in the output}"
kib="$(sed -n 's/.*gzip: \([0-9.]*\) KiB.*/\1/p' <<<"$line")"
if [ -n "$kib" ]; then
	kib=${kib%.*}
	if [ "$kib" -gt "${FLARE_GZIP_MAX_KIB:-3906}" ]; then
		echo "bundle is $kib KiB gzip: over the ${FLARE_GZIP_MAX_KIB:-3906} KiB limit" >&2
		exit 1
	fi
	if [ "$kib" -gt "${FLARE_GZIP_WARN_KIB:-3072}" ]; then
		echo "warning: bundle is $kib KiB gzip, over ${FLARE_GZIP_WARN_KIB:-3072} KiB (the free plan's 3 MiB)" >&2
	fi
fi
