#!/usr/bin/env bash
# CI's stand-in for building the sandbox images (build-local.sh builds them for real,
# too slowly for CI: specs/cloudflare.md "Sandbox images"): it runs
# the images' build step (build-agent.sh, exactly as the Dockerfiles run it) and checks
# that each Dockerfile still builds and runs the agent that way.
#
#   sandbox-images/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sandbox-images/build-agent.sh "$tmp/flare"
"$tmp/flare" agent --help >/dev/null 2>&1 || { echo "check: flare agent --help failed" >&2; exit 1; }
for df in sandbox-images/lean/Dockerfile sandbox-images/chromium/Dockerfile sandbox-images/go/Dockerfile; do
	grep -q 'RUN sandbox-images/build-agent.sh /out/flare' "$df" || { echo "check: $df does not build the agent with build-agent.sh" >&2; exit 1; }
	grep -q '^USER ' "$df" || { echo "check: $df runs as root" >&2; exit 1; }
	grep -q '^ENTRYPOINT \["/usr/local/bin/flare", "agent"' "$df" || { echo "check: $df does not start flare agent" >&2; exit 1; }
	grep -q '^EXPOSE 8080' "$df" || { echo "check: $df does not expose the agent port 8080 (worker/src/index.js agentPort)" >&2; exit 1; }
	if grep -E '^FROM ' "$df" | grep -vE '@sha256:[0-9a-f]{64}|:[0-9]+\.[0-9]+' | grep -q .; then
		echo "check: $df has a base image without an exact tag or digest" >&2; exit 1
	fi
done
echo "sandbox-images: agent builds as the Dockerfiles build it; the images themselves: sandbox-images/build-local.sh (root, podman; not in CI)"
