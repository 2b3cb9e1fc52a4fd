#!/usr/bin/env bash
# Build the notebook image on this machine (Debian 12, as root), where no image registry is
# reachable: Debian's podman builds images/notebook/Dockerfile FROM a base made with debootstrap
# from Debian's packages, and pip installs the image's Python packages from wheels downloaded
# beforehand.
#
#   images/build-here.sh fetch         download what the build needs (this needs the package
#                                      registries): the base and the image's wheels
#   images/build-here.sh build         build the target notebook, offline, as
#                                      localhost/enclave/notebook:here
#   images/build-here.sh run ARGS...   podman run ARGS, as these machines need it
#
# What fetch makes is kept in $ENCLAVE_IMAGE_CACHE (default /var/cache/enclave/images), named
# by a hash of what it is made from, and reused while that is unchanged.
set -euo pipefail

cd "$(dirname "$0")/.."
CACHE=${ENCLAVE_IMAGE_CACHE:-/var/cache/enclave/images}
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=localhost/enclave/notebook:here
# The extras the notebook target installs (tests/test_images.py checks them against it).
EXTRAS=hub,data,viz
# The base stands for python:3.11-slim-bookworm: Debian's Python 3.11, with pip in a virtual
# environment at /usr/local, where that image has its Python. As no Debian mirror is reachable
# from inside the build, it also holds the Debian packages of session-packages.txt, and no apt
# sources: the Dockerfile's apt-get step finds them installed and nothing to fetch.
BASE_PACKAGES=python3-venv,libpython3.11
BASE_CONFIG=(--change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin'
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]')
# crun refuses cgroups in hybrid mode while the cgroup v2 hierarchy holds a controller (hugetlb
# on these machines); runc does not. Root lacks CAP_SYS_RESOURCE here, so a container cannot
# have podman's default limits (1048576 files and processes), only the machine's: its own hard
# limits, and no more processes than pid_max (podman's own limit).
PODMAN=(podman --runtime runc)
files=$(ulimit -Hn) processes=$(ulimit -Hu) pid_max=$(</proc/sys/kernel/pid_max)
[ "$processes" = unlimited ] || [ "$processes" -gt "$pid_max" ] && processes=$pid_max
ULIMITS=(--ulimit "nofile=$files:$files" --ulimit "nproc=$processes:$processes")

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

key() {
    cat "$@" | sha256sum | cut -c1-16
}

# The base's key: its packages and the commands that make it.
base_key() {
    key images/session-packages.txt <(echo "$BASE_PACKAGES" "${BASE_CONFIG[@]}") \
        <(declare -f fetch_base)
}

wheels_key() {
    key pyproject.toml images/no-deps-packages.txt
}

# Remove what an older key made ($1-*), once $1-$2 is there.
remove_older() {
    find "$CACHE" -maxdepth 1 -name "$1-*" ! -name "$1-$2*" -exec rm -rf {} +
}

fetch_base() {
    local base key
    key=$(base_key)
    base="$CACHE/base-$key.tar"
    [ -f "$base" ] && return
    local mirror
    # shellcheck disable=SC2016 # $(REPO_URI) is apt's field, not the shell's
    mirror=$(apt-get indextargets --format '$(REPO_URI)' 'Label: Debian' 'Codename: bookworm' \
        'Identifier: Packages' | head -n 1)
    if [ -z "$mirror" ]; then
        echo "build-here.sh: apt has no Debian bookworm source (run apt-get update)" >&2
        exit 1
    fi
    echo "Making the image's base with debootstrap: minbase, $BASE_PACKAGES, session-packages.txt"
    work=$(mktemp -d "$CACHE/work.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    debootstrap --variant=minbase --include="$BASE_PACKAGES" bookworm "$work/rootfs" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 20 "$work/debootstrap.log" "$work/rootfs/debootstrap/debootstrap.log" >&2
        exit 1
    }
    # apt resolves the session packages' dependencies (debootstrap's --include cannot).
    mapfile -t session_packages < <(grep -v '^#' images/session-packages.txt)
    # shellcheck disable=SC2016 # the scripts' variables are expanded by the inner shells
    unshare --mount --fork -- /bin/bash -euc '
        mount -t proc proc "$1/proc"
        exec chroot "$@"' bash "$work/rootfs" /bin/bash -euc '
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
        apt-get clean
        rm -rf /var/lib/apt/lists/* /etc/apt/sources.list /etc/apt/sources.list.d/*
        python3 -m venv /usr/local' bash "${session_packages[@]}" >"$work/apt.log" 2>&1 || {
        tail -n 20 "$work/apt.log" >&2
        exit 1
    }
    tar --numeric-owner -C "$work/rootfs" -cf "$work/base.tar" .
    mv "$work/base.tar" "$base"
    rm -rf "$work"
    trap - EXIT
    remove_older base "$key"
}

fetch_wheels() {
    local wheels key
    key=$(wheels_key)
    wheels="$CACHE/wheels-$key"
    [ -d "$wheels" ] && return
    echo "Downloading the notebook image's wheels"
    work=$(mktemp -d "$CACHE/work.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    mapfile -t build_requires < <("$PYTHON" -c 'import tomllib
print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")')
    "$PYTHON" -m pip download -qq -d "$work" --only-binary=:all: "$(pwd)[$EXTRAS]" \
        "${build_requires[@]}"
    "$PYTHON" -m pip download -qq -d "$work" --only-binary=:all: --no-deps \
        -r images/no-deps-packages.txt
    chmod 755 "$work"
    mv "$work" "$wheels"
    trap - EXIT
    remove_older wheels "$key"
}

build() {
    local key base wheels
    key=$(base_key)
    base="$CACHE/base-$key.tar"
    wheels="$CACHE/wheels-$(wheels_key)"
    if [ ! -f "$base" ] || [ ! -d "$wheels" ]; then
        echo "build-here.sh: $CACHE has no base or wheels for these sources:" \
            "run images/build-here.sh fetch (./bootstrap.sh test does)" >&2
        exit 1
    fi
    local base_image="localhost/enclave/base:$key" old
    if ! "${PODMAN[@]}" image exists "$base_image"; then
        "${PODMAN[@]}" import -q "${BASE_CONFIG[@]}" "$base" "$base_image" >/dev/null
    fi
    for old in $("${PODMAN[@]}" images --format '{{.Repository}}:{{.Tag}}' localhost/enclave/base); do
        [ "$old" = "$base_image" ] || "${PODMAN[@]}" untag "$old" "$old"
    done
    # pip finds only the wheels, through a configuration mounted for the build's steps alone.
    pip_conf=$(mktemp)
    trap 'rm -f "$pip_conf"' EXIT
    printf '[global]\nno-index = true\nfind-links = /wheels\n' >"$pip_conf"
    chmod 644 "$pip_conf"
    # The docker format keeps the Dockerfile's SHELL (the OCI format has no such setting).
    "${PODMAN[@]}" build --format docker --network=none --pull=never "${ULIMITS[@]}" \
        --build-arg BASE="$base_image" \
        --volume "$wheels:/wheels:ro" --volume "$pip_conf:/etc/pip.conf:ro" \
        -f images/notebook/Dockerfile --target notebook -t "$IMAGE" .
    # Layers that no tagged image uses any more (earlier builds, the older base).
    "${PODMAN[@]}" image prune -f >/dev/null
}

[ $# -ge 1 ] || usage
mkdir -p "$CACHE"
case "$1" in
    fetch)
        [ $# -eq 1 ] || usage
        fetch_base
        fetch_wheels
        ;;
    build)
        [ $# -eq 1 ] || usage
        build
        ;;
    run)
        shift
        exec "${PODMAN[@]}" run "${ULIMITS[@]}" "$@"
        ;;
    *) usage ;;
esac
