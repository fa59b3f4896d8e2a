#!/usr/bin/env bash
# Build meshgen's real test servers from their published Go modules (via the Go module proxy).
#
#   testenv/build.sh etcd | kube-apiserver | istio | istio-crds | kube | all
#
# Binaries land in $MESHGEN_CACHE_DIR (default ~/.cache/meshgen):
#   etcd-<v>/etcd   kube-apiserver-<v>/kube-apiserver   istio-<v>/{pilot-discovery,istioctl,crd-all.gen.yaml}
# Idempotent: a component whose files already exist is not rebuilt (and `go` is not needed).
# Each binary is built into a temp dir next to its target and renamed into place, so an
# interrupted build never leaves a partial binary. Concurrent invocations serialise on a lock.
# Progress goes to stderr; the binary paths are printed on stdout, one per line.
#
# Versions live in one place each: the require line of testenv/<component>/go.mod.
# To bump: etcd/istio -> edit go.mod + `go mod tidy`; kube-apiserver -> kube-apiserver/gen-replaces.sh v1.X.Y.
set -euo pipefail

TESTENV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_DIR="${MESHGEN_CACHE_DIR:-$HOME/.cache/meshgen}"

ETCD_MODULE=go.etcd.io/etcd/server/v3
KUBE_MODULE=k8s.io/kubernetes
ISTIO_MODULE=istio.io/istio

log() { echo "build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  echo "usage: $0 etcd|kube-apiserver|istio|istio-crds|kube|all   (kube = etcd kube-apiserver istio-crds)" >&2
  exit 2
}

# Version of module $2 as required in testenv/$1/go.mod (no go needed).
modversion() {
  local v
  v="$(awk -v m="$2" '
    $1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 ~ /^v[0-9]/  { print $2; exit }' "$TESTENV_DIR/$1/go.mod")"
  [[ -n "$v" ]] || die "no require of $2 in $TESTENV_DIR/$1/go.mod"
  echo "$v"
}

GO_CHECKED=
need_go() {
  [[ -n "$GO_CHECKED" ]] && return 0
  if ! command -v go >/dev/null 2>&1; then
    die "'go' not found in PATH. Install Go >= 1.24 (https://go.dev/dl/; it fetches the go1.26 toolchain these modules need unless GOTOOLCHAIN=local), or point MESHGEN_TESTENV_BIN / KUBEBUILDER_ASSETS at a directory of prebuilt binaries (etcd, kube-apiserver, pilot-discovery, istioctl)."
  fi
  local gv minor
  gv="$(go env GOVERSION 2>/dev/null || true)"
  minor="$(sed -n 's/^go1\.\([0-9][0-9]*\).*/\1/p' <<<"$gv")"
  if [[ -z "$minor" || "$minor" -lt 24 ]]; then
    die "found ${gv:-an unknown Go version} at $(command -v go); need Go >= 1.24, or set MESHGEN_TESTENV_BIN / KUBEBUILDER_ASSETS to a directory of prebuilt binaries."
  fi
  # Reproducible, self-contained builds; ignore any go.work and user GOFLAGS (e.g. -mod=vendor).
  export GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly -buildvcs=false"
  GO_CHECKED=1
}

TMPDIRS=()
cleanup() {
  local d
  for d in "${TMPDIRS[@]+"${TMPDIRS[@]}"}"; do rm -rf "$d"; done
}
trap cleanup EXIT

# Take an exclusive lock for $1 (a directory) for the rest of the script, if flock exists.
LOCK_FD=9
lock_dir() {
  command -v flock >/dev/null 2>&1 || return 0
  local fd=$LOCK_FD
  LOCK_FD=$((LOCK_FD + 1))
  eval "exec $fd>\"\$1/.lock\""
  if ! flock -n "$fd"; then
    log "waiting for another build in $1 ..."
    flock "$fd"
  fi
}

all_exist() {
  local f
  for f in "$@"; do [[ -s "$f" ]] || return 1; done
}

# needs_build <what> <dir> <file>...: succeeds when some file is missing, with go checked and <dir>'s lock
# held (checked again under the lock: another build may just have finished); else logs "<what>: up to date".
needs_build() {
  local what="$1" dir="$2"
  shift 2
  all_exist "$@" && { log "$what: up to date"; return 1; }
  need_go
  mkdir -p "$dir"
  lock_dir "$dir"
  ! all_exist "$@"
}

# go_build <module dir> <package> <output file> <tags> <ldflags>
go_build() {
  local mod="$1" pkg="$2" out="$3" tags="$4" ldflags="$5"
  local name tmp start
  name="$(basename "$out")"
  tmp="$(mktemp -d "$(dirname "$out")/.$name.tmp.XXXXXX")"
  TMPDIRS+=("$tmp")
  log "building $pkg -> $out (cold builds take several minutes) ..."
  start=$SECONDS
  (cd "$TESTENV_DIR/$mod" && nice -n 10 go build -trimpath -mod=readonly -buildvcs=false \
      ${tags:+-tags "$tags"} -ldflags "$ldflags" -o "$tmp/$name" "$pkg")
  chmod 0755 "$tmp/$name"
  mv -f "$tmp/$name" "$out"
  rm -rf "$tmp"
  log "built $name in $((SECONDS - start))s"
}

build_etcd() {
  local v dir
  v="$(modversion etcd "$ETCD_MODULE")"
  dir="$CACHE_DIR/etcd-$v"
  OUT=("$dir/etcd")
  needs_build "etcd $v" "$dir" "${OUT[@]}" || return 0
  go_build etcd . "$dir/etcd" "" "-s -w"
}

build_kube_apiserver() {
  local v dir ld="-s -w" major minor rest k
  v="$(modversion kube-apiserver "$KUBE_MODULE")"
  dir="$CACHE_DIR/kube-apiserver-$v"
  OUT=("$dir/kube-apiserver")
  needs_build "kube-apiserver $v" "$dir" "${OUT[@]}" || return 0
  # Same version stamping as k8s hack/lib/version.sh, so `--version` and /version report v1.X.Y
  # (unstamped builds report v0.0.0-master+$Format:%H$).
  rest="${v#v}"; major="${rest%%.*}"; rest="${rest#*.}"; minor="${rest%%.*}"
  for k in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld+=" -X $k.gitVersion=$v -X $k.gitMajor=$major -X $k.gitMinor=$minor -X $k.gitTreeState=clean"
  done
  go_build kube-apiserver . "$dir/kube-apiserver" "" "$ld"
}

build_istio() {
  local v dir src rev ver ld
  v="$(modversion istio "$ISTIO_MODULE")"
  dir="$CACHE_DIR/istio-$v"
  OUT=("$dir/pilot-discovery" "$dir/istioctl")
  needs_build "istio $v" "$dir" "${OUT[@]}" "$dir/crd-all.gen.yaml" || return 0
  src="$(istio_source)"
  # Stamp like upstream dev builds (VERSION file + "-dev", e.g. 1.31-dev) so version parsing works.
  ver="$(tr -d '[:space:]' <"$src/VERSION" 2>/dev/null || true)"
  ver="${ver:+$ver-dev}"
  rev="${v##*-}"
  ld="-s -w -X istio.io/istio/pkg/version.buildVersion=${ver:-$v}"
  ld+=" -X istio.io/istio/pkg/version.buildGitRevision=$rev -X istio.io/istio/pkg/version.buildStatus=Clean"
  ld+=" -X istio.io/istio/pkg/version.buildTag=$v"
  ld+=" -X istio.io/istio/pkg/version.buildOS=$(go env GOOS) -X istio.io/istio/pkg/version.buildArch=$(go env GOARCH)"
  [[ -s "$dir/pilot-discovery" ]] ||
    go_build istio istio.io/istio/pilot/cmd/pilot-discovery "$dir/pilot-discovery" vtprotobuf,disable_pgv "$ld"
  [[ -s "$dir/istioctl" ]] ||
    go_build istio istio.io/istio/istioctl/cmd/istioctl "$dir/istioctl" vtprotobuf,disable_pgv "$ld"
  copy_istio_crds "$src" "$dir"
}

# The istio.io/istio module's directory, downloading it first if needed (`go list -m` alone prints nothing for a
# module that is not in the module cache yet, which is the case on a fresh machine).
istio_source() {
  local src
  src="$(cd "$TESTENV_DIR/istio" && go mod download -json "$ISTIO_MODULE" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')"
  [[ -d "$src" ]] || die "could not locate $ISTIO_MODULE in the module cache"
  echo "$src"
}

# Istio CRDs, copied out of the module so tests need neither go nor the module cache.
copy_istio_crds() {
  local src="$1" dir="$2" tmp
  [[ -s "$dir/crd-all.gen.yaml" ]] && return 0
  [[ -s "$src/manifests/charts/base/files/crd-all.gen.yaml" ]] ||
    die "$src/manifests/charts/base/files/crd-all.gen.yaml not found"
  tmp="$(mktemp "$dir/.crd-all.gen.yaml.tmp.XXXXXX")"
  TMPDIRS+=("$tmp")
  cp "$src/manifests/charts/base/files/crd-all.gen.yaml" "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$dir/crd-all.gen.yaml"
}

# Only the Istio CRDs (what the reconciler tests need): `go mod download` of istio.io/istio, no build.
build_istio_crds() {
  local v dir src
  v="$(modversion istio "$ISTIO_MODULE")"
  dir="$CACHE_DIR/istio-$v"
  OUT=("$dir/crd-all.gen.yaml")
  needs_build "istio CRDs $v" "$dir" "${OUT[@]}" || return 0
  log "downloading $ISTIO_MODULE@$v for its CRDs ..."
  copy_istio_crds "$(istio_source)" "$dir"
}

[[ $# -eq 1 ]] || usage
case "$1" in
  etcd) components=(etcd) ;;
  kube-apiserver) components=(kube_apiserver) ;;
  istio) components=(istio) ;;
  istio-crds) components=(istio_crds) ;;
  kube) components=(etcd kube_apiserver istio_crds) ;;
  all) components=(etcd kube_apiserver istio) ;;
  -h | --help) usage ;;
  *) log "unknown component '$1'"; usage ;;
esac

mkdir -p "$CACHE_DIR"
paths=()
for c in "${components[@]}"; do
  OUT=()
  "build_$c"
  paths+=("${OUT[@]}")
done
printf '%s\n' "${paths[@]}"
