#!/usr/bin/env bash
# Everything the real-VS-Code test (tests/editors/test_vscode.py) needs, offline after this:
# Debian's chromium, node and the native-build tools; code-server (VS Code 1.100.3 in the
# browser) under .cache/vscode-e2e/; the extension's npm packages (puppeteer-core among them),
# its checks and its .vsix. Idempotent: a second run only rebuilds what changed. Uses the npm
# cache when there is one (--prefer-offline) but never needs it.
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"        # editors/vscode
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${QCN_E2E_CACHE:-$ROOT/.cache/vscode-e2e}"
CODE_SERVER_VERSION=4.100.3                       # = VS Code 1.100.3, the last on Node 20
CODE_SERVER_DIR="$CACHE/code-server-$CODE_SERVER_VERSION"
NPM_FLAGS=(--prefer-offline --no-audit --no-fund --loglevel=error)
# node-gyp builds against Debian's node headers instead of downloading them; node-pty's
# install script runs `npx node-gyp` and must not stop to ask.
export npm_config_nodedir=/usr npm_config_yes=true
export DEBIAN_FRONTEND=noninteractive

say() { echo ">> setup-e2e: $*" >&2; }
started=$SECONDS

# -- Debian packages ------------------------------------------------------------------------
missing=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
have_cmd chromium || missing+=(chromium)
have_cmd rg || missing+=(ripgrep)
have_cmd node || missing+=(nodejs)
have_cmd npm || missing+=(npm)
have_cmd python3 || missing+=(python3)
for pkg in libkrb5-dev build-essential pkg-config; do
  have_pkg "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if ((node_major < 20)); then
  say "Node.js $(node --version) is too old: code-server $CODE_SERVER_VERSION and the extension's tools need Node 20"
  exit 1
fi

# -- the extension: packages, lint, type-check, unit tests, .vsix ---------------------------
cd "$HERE"
# By content, not modification time: a checkout or rebase touches the lockfile.
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat node_modules/.qcn-lock-sha256 2>/dev/null)" != "$lock_sum" ]]; then
  say "npm ci (editors/vscode)"
  npm ci "${NPM_FLAGS[@]}"
  echo "$lock_sum" >node_modules/.qcn-lock-sha256
fi
npm run --silent check

# -- code-server ------------------------------------------------------------------------------
# Its postinstall downloads ripgrep from GitHub (and a failure there rolls back the whole
# install), so the steps of code-server's postinstall.sh are done here with Debian's rg.
if [[ ! -f "$CODE_SERVER_DIR/.installed" ]]; then
  say "installing code-server $CODE_SERVER_VERSION into $CODE_SERVER_DIR"
  rm -rf "$CODE_SERVER_DIR"
  mkdir -p "$CODE_SERVER_DIR"
  cd "$CODE_SERVER_DIR"
  echo '{"name": "qcn-vscode-e2e", "private": true}' >package.json
  npm install "${NPM_FLAGS[@]}" --ignore-scripts "code-server@$CODE_SERVER_VERSION"
  npm rebuild --loglevel=error argon2                  # its prebuilt download fails: compiles
  cd node_modules/code-server/lib/vscode
  npm install "${NPM_FLAGS[@]}" --omit=dev --ignore-scripts
  mkdir -p node_modules/@vscode/ripgrep/bin
  cp "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
  npm rebuild --loglevel=error                         # spdlog, node-pty, kerberos, ...
  ln -sfn node_modules node_modules.asar
  ln -sfn code-linux.sh bin/remote-cli/code-server
  ln -sfn browser-linux.sh bin/helpers/browser.sh
  (cd extensions && npm install "${NPM_FLAGS[@]}" --omit=dev >/dev/null)
  touch "$CODE_SERVER_DIR/.installed"
fi

"$CODE_SERVER_DIR/node_modules/.bin/code-server" --version >/dev/null
say "ready in $((SECONDS - started)) s: $CODE_SERVER_DIR, $HERE/qcn-lsp.vsix, $(chromium --version 2>/dev/null | head -1)"
