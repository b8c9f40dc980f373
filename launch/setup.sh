#!/usr/bin/env bash
# Installs what building, testing and running Ligand needs, and only what is missing:
# Debian packages through apt-get, Python packages (for the interoperability tests) through pip.
# Safe to run any number of times; does nothing when everything is present.
set -euo pipefail

APT_PACKAGES=(
    libopenmpi-dev openmpi-bin          # MPI headers, libmpi, mpirun
    libopenblas-dev liblapacke-dev      # BLAS / LAPACK(E)
    zlib1g-dev pkg-config               # gzip'd IDX files; pkg-config finds ompi-c and zlib
    dataset-fashion-mnist               # the benchmark data, under /usr/share/datasets/fashion-mnist
    chromium                            # renders the report's SVG charts in Tests/python/test_svg_render.py
    iproute2                            # ip netns: the test hosts of launch/multihost-tests.sh
)
PIP_PACKAGES=(safetensors numpy pytest)   # the Python interoperability tests

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else echo "error: '$*' needs root and sudo is not installed" >&2; exit 1
    fi
}

if ! command -v swift >/dev/null 2>&1 || ! swift --version >/dev/null 2>&1; then
    cat >&2 <<'EOF'
error: the Swift toolchain (swift 6.x) is not on PATH.
  Get it from https://www.swift.org/install/linux/ (Debian 12 tarball or swiftly),
  unpack it, and put its usr/bin on PATH, then run this script again.
EOF
    exit 1
fi

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
    # dpkg -s succeeds for removed-but-configured packages too; check the status line.
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing_apt+=("$p")
    fi
done

python=""
for cand in python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then python="$cand"; break; fi
done
if [[ -z "$python" ]]; then
    # No Python at all: Debian's python3 with pip (a pyenv or system Python is used as is).
    missing_apt+=(python3 python3-pip)
fi

if (( ${#missing_apt[@]} > 0 )); then
    echo "setup: installing ${missing_apt[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_apt[@]}"
    [[ -n "$python" ]] || python=python3
fi

missing_pip=()
if ! "$python" -c 'import safetensors, numpy, pytest' >/dev/null 2>&1; then
    for m in "${PIP_PACKAGES[@]}"; do
        "$python" -c "import $m" >/dev/null 2>&1 || missing_pip+=("$m")
    done
fi
if (( ${#missing_pip[@]} > 0 )); then
    echo "setup: pip-installing ${missing_pip[*]}"
    if ! "$python" -m pip --version >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip
    fi
    # Debian's own python refuses system-wide pip installs (PEP 668) unless told otherwise.
    extra=(--break-system-packages)
    [[ "$(id -u)" == 0 ]] || extra+=(--user)
    "$python" -m pip install -q "${missing_pip[@]}" 2>/dev/null \
        || "$python" -m pip install -q "${extra[@]}" "${missing_pip[@]}"
fi

if (( ${#missing_apt[@]} == 0 && ${#missing_pip[@]} == 0 )); then
    echo "setup: everything is already installed (nothing to do)"
else
    echo "setup: done"
fi
