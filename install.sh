#!/usr/bin/env bash
# Install rtverb on a fresh Debian/Ubuntu machine (run as root, or with sudo available).
#   ./install.sh        the runtime: PortAudio, then rtverb itself (editable)
#   ./install.sh dev    also what the tests need: JACK (dummy audio server), liblo's OSC
#                       tools, espeak-ng, the CPU build of torch, the train and dev extras
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-runtime}"
case "$mode" in runtime|dev) ;; *) echo "usage: ./install.sh [dev]" >&2; exit 2 ;; esac

debs=(libportaudio2)
[ "$mode" = dev ] && debs+=(jackd2 liblo-tools espeak-ng)
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  missing=()
  for d in "${debs[@]}"; do dpkg -s "$d" >/dev/null 2>&1 || missing+=("$d"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  echo "install.sh: no apt-get; install ${debs[*]} with your package manager" >&2
fi

py="${PYTHON:-python3}"
if [ "$mode" = dev ]; then
  # torch first and pinned: an unpinned torch pulls the CUDA build (gigabytes)
  "$py" -m pip install -q torch==2.13.0
  "$py" -m pip install -q -e ".[train,dev]"
else
  "$py" -m pip install -q -e .
fi
