#!/usr/bin/env bash
# Installs the Debian 12 packages libinfer builds with (uses sudo when not root). Idempotent.
set -euo pipefail
pkgs=(cmake g++ make pkg-config libcli11-dev nlohmann-json3-dev libonig-dev libutf8proc-dev libgtest-dev libgmock-dev libcpp-httplib-dev tmux curl python3-venv)
# The sanitizer build and the libFuzzer targets (docs/hardening.md): clang with its runtimes (ASan, UBSan, libFuzzer),
# llvm-symbolizer for the stack traces; procps (pgrep) for the long REPL test.
pkgs+=(clang libclang-rt-14-dev llvm procps)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
