#!/usr/bin/env bash
# Sourced by scripts/test.sh: the portal's verification programs (Python, Node.js, Go) are
# run by the tests as real receivers. Installs the three from Debian's packages when missing
# (as root) and exports where they are. Python's Ed25519 program needs the `cryptography`
# package (the standard library has no Ed25519): Debian's python3-cryptography.
langs_missing=""
command -v python3 >/dev/null 2>&1 || langs_missing="$langs_missing python3"
python3 -c 'import cryptography' >/dev/null 2>&1 || /usr/bin/python3 -c 'import cryptography' >/dev/null 2>&1 ||
  langs_missing="$langs_missing python3-cryptography"
command -v node >/dev/null 2>&1 || langs_missing="$langs_missing nodejs"
command -v go >/dev/null 2>&1 || langs_missing="$langs_missing golang-go"
if [ -n "$langs_missing" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing:$langs_missing (the portal's verification programs)"
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $langs_missing >/dev/null
  else
    echo "the portal's verification-program tests need python3 (with cryptography), node and go: apt-get install -y$langs_missing" >&2
    exit 1
  fi
fi
unset langs_missing
WEBHOOKD_TEST_PYTHON=$(command -v python3)
# Debian's python3-cryptography serves Debian's python3: that one, when the first python3 on
# the PATH (a pyenv's, say) lacks the package.
if ! "$WEBHOOKD_TEST_PYTHON" -c 'import cryptography' >/dev/null 2>&1 && [ -x /usr/bin/python3 ]; then
  WEBHOOKD_TEST_PYTHON=/usr/bin/python3
fi
WEBHOOKD_TEST_NODE=$(command -v node)
WEBHOOKD_TEST_GO=$(command -v go)
export WEBHOOKD_TEST_PYTHON WEBHOOKD_TEST_NODE WEBHOOKD_TEST_GO
