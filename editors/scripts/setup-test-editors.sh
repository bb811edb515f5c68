#!/usr/bin/env bash
# Installs the real editors that tests/editors/ drive as LSP clients, from Debian's packages:
# Neovim (0.7.2 on bookworm), Emacs without X (emacs-nox) and eglot for Emacs < 29
# (elpa-eglot). Installs only what is missing, so it is safe to run again.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

updated=0
install() {
  if [ "$updated" -eq 0 ]; then
    as_root apt-get update -qq
    updated=1
  fi
  echo ">> installing $* (for the editor tests)"
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v nvim >/dev/null 2>&1 || missing+=(neovim)
command -v emacs >/dev/null 2>&1 || missing+=(emacs-nox)
if [ "${#missing[@]}" -gt 0 ]; then
  install "${missing[@]}"
fi
# Emacs 29 and later have eglot built in; Emacs 28 needs the package.
if ! emacs --batch --eval "(require 'eglot)" >/dev/null 2>&1; then
  install elpa-eglot
fi
echo ">> editors for the tests: $(nvim --version | head -n 1), $(emacs --version | head -n 1)"
