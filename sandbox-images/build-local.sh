#!/usr/bin/env bash
# Builds the three sandbox images for real on a machine without Docker or Docker Hub,
# then runs each one and checks what it promises:
#
#   sandbox-images/build-local.sh          (as root, from anywhere; needs podman and
#                                           debootstrap: apt-get install podman debootstrap)
#
# The Dockerfiles are built unchanged with podman (buildah inside: --isolation chroot,
# so no systemd or cgroup delegation is needed; --network host, so apt-get reaches the
# Debian mirror; --pull=never, so nothing is fetched from a registry).
#
# Their bases cannot be pulled here, so the script first builds LOCAL STAND-INS under
# the official names, and the images it builds are only as faithful as they are:
# - debian:12.11-slim: `debootstrap --variant=minbase bookworm` from the machine's
#   Debian mirror with bookworm, bookworm-updates and bookworm-security in
#   /etc/apt/sources.list.d/debian.sources, and the official slim image's apt and dpkg
#   settings (no package cache kept, no docs, man pages or locales installed). It
#   differs from the official image in that it is the current bookworm point release
#   (not 12.11) and was not built by debuerreotype (timestamps, file order, ids).
# - golang:1.26.8-bookworm: that rootfs plus the packages of buildpack-deps:bookworm-scm
#   (ca-certificates curl gnupg netbase wget git mercurial openssh-client subversion
#   procps) and the golang image's own (g++ gcc libc6-dev make pkg-config), with THIS
#   machine's Go 1.26.8 (`go env GOROOT`) at /usr/local/go, and the official image's
#   ENV (GOLANG_VERSION, GOTOOLCHAIN=local, GOPATH=/go, PATH) and WORKDIR /go. It
#   differs in its Debian rootfs (above; the official one is debian:bookworm, with docs)
#   and in its Go tree, which is this machine's install rather than go.dev's tarball
#   (the same release; its go.env may carry local defaults, overridden by the ENV).
# The stand-ins are built once and kept; FLARE_REBUILD_BASES=1 rebuilds them. Built on a
# machine that can pull the official bases, the images are what this script checks
# only as far as those bases match the stand-ins.
#
# Checks (in working containers of the images, as their user): each image's user is 10001 and its
# `flare agent --help` runs; the Go image has Go 1.26.8, its .flare-image manifest, and
# a stdlib-only module's first `go test` compiles none of the standard library; the
# chromium image's chromium renders a page headless, and node and npm run.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-local: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (podman builds and debootstrap need it)"
for tool in podman debootstrap go; do
	command -v "$tool" >/dev/null 2>&1 || die "missing $tool (apt-get install -y podman debootstrap)"
done

work="${FLARE_IMAGES_WORK:-/var/tmp/flare-images}"
mirror="${FLARE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "$work"
build=(podman build --pull=never --layers --isolation chroot --network host)
# A machine whose TLS goes through an intercepting proxy trusts its CA locally
# (/usr/local/share/ca-certificates); the builds' `go mod download` must too. The
# machine's bundle is bind-mounted into every RUN step where Go, and nothing else
# here, reads it (Go loads every file under /etc/pki/tls/certs): it is not copied into
# any layer, but buildah leaves the mount point, an empty /etc/pki/tls/certs, in the
# images built this way.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
	build+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/pki/tls/certs/build-host-ca.pem:ro)
fi
exists() { podman image exists "$1" && [ "${FLARE_REBUILD_BASES:-}" != 1 ]; }
elapsed() { echo $(($(date +%s) - $1)); }

# The bases' tags, as the Dockerfiles spell them (check.sh holds them to exact tags).
debian_tag="$(grep -h '^FROM debian:' sandbox-images/*/Dockerfile | awk '{print $2}' | sort -u)"
golang_tag="$(grep -h '^FROM golang:' sandbox-images/*/Dockerfile | awk '{print $2}' | sort -u)"
[ "$(echo "$debian_tag" | wc -l)" = 1 ] && [ "$(echo "$golang_tag" | wc -l)" = 1 ] ||
	die "the Dockerfiles name more than one debian or golang base: $debian_tag $golang_tag"
go_version="go${golang_tag#golang:}"
go_version="${go_version%-bookworm}"
[ "$(go env GOVERSION)" = "$go_version" ] ||
	die "the golang stand-in needs this machine's Go to be $go_version (it is $(go env GOVERSION))"

t0=$(date +%s)
if ! exists "docker.io/library/$debian_tag"; then
	rm -rf "$work/rootfs"
	debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
		{ tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log: $work/debootstrap.log)"; }
	rm -f "$work/rootfs/etc/apt/sources.list"
	cat >"$work/rootfs/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: $mirror
		Suites: bookworm bookworm-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: ${mirror%/debian}/debian-security
		Suites: bookworm-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
	# What the official images configure (debuerreotype): apt keeps no downloaded
	# packages or caches in a layer, fetches no translations, suggests nothing; the slim
	# variant's dpkg installs no docs (but copyrights), man pages or locales.
	cat >"$work/rootfs/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOF
	echo 'Acquire::Languages "none";' >"$work/rootfs/etc/apt/apt.conf.d/docker-no-languages"
	echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$work/rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
	cat >"$work/rootfs/etc/dpkg/dpkg.cfg.d/docker" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/groff/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/lintian/*
		path-exclude /usr/share/linda/*
		path-exclude /usr/share/locale/*
	EOF
	find "$work/rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
	rm -rf "$work/rootfs/usr/share/man/"* "$work/rootfs/usr/share/groff/"* "$work/rootfs/usr/share/info/"* \
		"$work/rootfs/usr/share/lintian/"* "$work/rootfs/usr/share/locale/"* \
		"$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin "$work/rootfs/var/cache/apt/archives/"*.deb
	tar -C "$work/rootfs" -c . | podman import -q --change 'CMD ["bash"]' - "docker.io/library/$debian_tag" >/dev/null
	rm -rf "$work/rootfs"
fi
if ! exists "docker.io/library/$golang_tag"; then
	cat >"$work/golang.Containerfile" <<-EOF
		FROM docker.io/library/$debian_tag
		RUN apt-get update \\
		 && apt-get install -y --no-install-recommends ca-certificates curl gnupg netbase wget \\
		      git mercurial openssh-client subversion procps g++ gcc libc6-dev make pkg-config \\
		 && rm -rf /var/lib/apt/lists/*
		ENV GOLANG_VERSION=${go_version#go} GOTOOLCHAIN=local GOPATH=/go
		ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		COPY . /usr/local/go
		RUN mkdir -p /go/src /go/bin && chmod -R 1777 /go && go version
		WORKDIR /go
	EOF
	"${build[@]}" -q -f "$work/golang.Containerfile" -t "docker.io/library/$golang_tag" "$(go env GOROOT)" >/dev/null
fi
echo "build-local: stand-in bases $debian_tag and $golang_tag ready ($(elapsed "$t0") s)"

# The images, each as its Dockerfile's header says to build it. --layers shares the
# identical build stage between them.
declare -A tag=([lean]=flare-agent:0.1.0 [go]=flare-agent-go:0.1.0 [chromium]=flare-agent-chromium:0.1.0)
for img in lean go chromium; do
	t=$(date +%s)
	"${build[@]}" -f "sandbox-images/$img/Dockerfile" -t "${tag[$img]}" . >"$work/build-$img.log" 2>&1 ||
		{ tail -30 "$work/build-$img.log" >&2; die "$img failed to build (log: $work/build-$img.log)"; }
	size=$(podman image inspect -f '{{.Size}}' "${tag[$img]}")
	echo "build-local: built ${tag[$img]} in $(elapsed "$t") s, $((size / 1000000)) MB"
done

# The checks run in a working container of each image with buildah's chroot isolation,
# as the image's user, environment and working directory say (`podman run` cannot set
# the rlimits it wants without CAP_SYS_RESOURCE here; chroot isolation has the host's
# network, so the Go check turns the module proxy off instead).
#   run IMAGE [buildah run options] -- COMMAND...
run() {
	local img=$1 c rc=0 opts=()
	shift
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	c=$(buildah from --pull-never "$img")
	buildah run --isolation chroot "${opts[@]}" "$c" -- "$@" || rc=$?
	buildah rm "$c" >/dev/null
	return $rc
}
for img in lean go chromium; do
	[ "$(run "${tag[$img]}" -- id -u)" = 10001 ] || die "${tag[$img]} does not run as uid 10001"
	run "${tag[$img]}" -- /usr/local/bin/flare agent --help >/dev/null 2>&1 ||
		die "${tag[$img]}: flare agent --help failed"
done
echo "build-local: every image runs flare agent as uid 10001"

# The Go image: the layer is there, and a first `go test` builds only the module's own
# packages. `go test -x` prints each compile with its package path (-p); the module's
# are flare.local/probe/...; any other is the standard library compiled again.
goimg=${tag[go]}
[ "$(run "$goimg" -- go env GOVERSION)" = "$go_version" ] || die "$goimg has no $go_version"
entries=$(run "$goimg" -- sh -c 'wc -l <"$GOCACHE/.flare-image"') || die "$goimg has no \$GOCACHE/.flare-image"
[ "$entries" -gt 1000 ] || die "$goimg: .flare-image lists only $entries entries"
mkdir -p "$work/probe/web"
printf 'module flare.local/probe\n\ngo 1.26\n' >"$work/probe/go.mod"
cat >"$work/probe/web/web.go" <<-'EOF'
	package web

	import (
		"encoding/json"
		"net/http"
	)

	func Handler(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(r.URL.Path) }
EOF
cat >"$work/probe/web/web_test.go" <<-'EOF'
	package web

	import (
		"encoding/json"
		"net/http/httptest"
		"testing"
	)

	func TestHandler(t *testing.T) {
		rec := httptest.NewRecorder()
		Handler(rec, httptest.NewRequest("GET", "/x", nil))
		var got string
		if err := json.NewDecoder(rec.Body).Decode(&got); err != nil || got != "/x" {
			t.Fatalf("got %q, %v", got, err)
		}
	}
EOF
probe='set -e
cp -r /probe /workspace/probe && cd /workspace/probe
start=$(date +%s%N)
go test -x -count=1 ./... 2>/workspace/trace
echo "go test: $(( ($(date +%s%N) - start) / 1000000 )) ms"
grep -o "/compile .* -p [^ ]*" /workspace/trace | sed "s/.* -p //" | sort -u | grep -v -e "^flare.local/probe" -e "^main$" | sed "s/^/compiled std: /" || true'
out=$(run "$goimg" -v "$work/probe:/probe:ro" -e GOPROXY=off -- sh -c "$probe") || die "$goimg: the probe module's go test failed: $out"
echo "$out" | grep -q '^compiled std: ' && die "$goimg: a first go test compiled the standard library:
$(echo "$out" | grep '^compiled std: ' | head)"
echo "build-local: $goimg: go test of a stdlib-only module compiled no standard package ($(echo "$out" | grep '^go test:'), $entries layer entries)"
# The same first run without the layer (an empty GOCACHE), for the figure.
cold=$(run "$goimg" -v "$work/probe:/probe:ro" -e GOPROXY=off -e GOCACHE=/tmp/cold -- sh -c "$probe") || die "$goimg: cold go test failed"
echo "build-local: $goimg without the layer: $(echo "$cold" | grep '^go test:'), $(echo "$cold" | grep -c '^compiled std: ') standard packages compiled"

# The chromium image: its chromium renders a page headless, as the agent starts it.
chrimg=${tag[chromium]}
dom=$(run "$chrimg" -- chromium --headless --no-sandbox --disable-gpu --dump-dom \
	'data:text/html,<p id=x>flare</p>' 2>/dev/null) || die "$chrimg: chromium --headless failed"
echo "$dom" | grep -q '<p id="x">flare</p>' || die "$chrimg: chromium rendered no page: $dom"
run "$chrimg" -- sh -c 'node --version && npm --version' >/dev/null || die "$chrimg: node or npm does not run"
echo "build-local: $chrimg: chromium $(run "$chrimg" -- chromium --version 2>/dev/null | awk '{print $2}') renders headless; node and npm run"
echo "build-local: all images built and checked in $(elapsed "$t0") s"
