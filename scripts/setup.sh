#!/usr/bin/env bash
# Sets up .venv in the repo root with the project installed; safe to run again.
#
#   bash scripts/setup.sh          the product (streamer, trainer, embedded models)
#   bash scripts/setup.sh --dev    plus what the tests need (pytest, Playwright, espeak-ng, sox, Chromium)
#
# torch goes in first, pinned to a CPU build, so that resolving the project's `torch>=2.4` never
# pulls a multi-GB CUDA wheel on a CPU machine. On a GPU machine, install the CUDA build you want
# first (or set TORCH_SPEC, e.g. TORCH_SPEC="torch==2.13.0" with your CUDA index configured in pip).
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1
python=${PYTHON:-python3}

apt_install() {
  # System libraries: PortAudio for the microphone, and for tests a speech synthesiser, a browser
  # and CJK fonts. Only as root with apt; otherwise say what is missing and go on.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} (apt-get)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: please install these system packages: ${missing[*]}" >&2
  fi
}

apt_install libportaudio2
[ $dev = 1 ] && apt_install espeak-ng sox chromium fonts-noto-cjk

[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${pip[@]}" install --upgrade pip >/dev/null
.venv/bin/python -c "import torch" 2>/dev/null || "${pip[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
if [ $dev = 1 ]; then "${pip[@]}" install -e ".[dev,cluster]"; else "${pip[@]}" install -e .; fi
# The speaker encoder's weights (pretrained.pt inside the resemblyzer wheel). --no-deps: its old
# metadata asks for webrtcvad and the typing backport, neither of which the project uses (see
# pyproject.toml); the network itself runs in core/speakers.py.
"${pip[@]}" install --no-deps "resemblyzer==0.1.4"
echo "setup: done (.venv ready)"
