#!/usr/bin/env bash
# Builds a real kube-apiserver for the Kubernetes provider's tests and prints
# its path. There is no packaged kube-apiserver on Debian, so it is built
# from the module proxy: k8s.io/kubernetes, with each of its staging modules
# (k8s.io/api, k8s.io/apiserver, ...) replaced by the published copy of the
# same release. The build runs in its own module under the cache folder, so
# kumo's go.mod never sees it, and the binary is reused while it exists.
#
#   KUMO_KUBE_APISERVER="$(scripts/kube-apiserver.sh)"
#
# A cold build takes minutes and about 2 GB of memory.
set -euo pipefail

k8s_version="${KUMO_KUBE_VERSION:-v1.34.4}"
staging_version="v0${k8s_version#v1}" # v1.34.4 -> v0.34.4
cache="${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/kumo-kube/$k8s_version"
bin="$cache/bin/kube-apiserver"
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

src="$cache/src"
mkdir -p "$src" "$cache/bin"
cd "$src"
export GOFLAGS=-mod=mod GOWORK=off

# Kubernetes' own go.mod names the staging modules it replaces with local
# folders (k8s.io/api => ./staging/src/k8s.io/api); each becomes a replace
# with the published release.
kmod="$(go mod download -json "k8s.io/kubernetes@$k8s_version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
{
	echo "module kumo.local/kube-apiserver"
	echo
	echo "go 1.24"
	echo
	echo "require k8s.io/kubernetes $k8s_version"
	echo
	sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$kmod" |
		sort -u | while read -r m; do
		echo "replace $m => $m $staging_version"
	done
} >go.mod
cat >tools.go <<'GO'
//go:build tools

// Package tools pins kube-apiserver for the build.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go mod tidy >&2
go build -trimpath -o "$bin.tmp.$$" k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$bin.tmp.$$" "$bin" # atomic: a build beside this one may finish first
echo "$bin"
