#!/usr/bin/env bash
# Sourced by scripts/test.sh: the portal's verification programs (Python, Node.js, Go) are
# run by the tests as real receivers. Installs the three from Debian's packages when missing
# (as root) and exports where they are.
langs_missing=""
command -v python3 >/dev/null 2>&1 || langs_missing="$langs_missing python3"
command -v node >/dev/null 2>&1 || langs_missing="$langs_missing nodejs"
command -v go >/dev/null 2>&1 || langs_missing="$langs_missing golang-go"
if [ -n "$langs_missing" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing:$langs_missing (the portal's verification programs)"
    apt-get update -qq
    # shellcheck disable=SC2086 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $langs_missing >/dev/null
  else
    echo "the portal's verification-program tests need python3, node and go: apt-get install -y$langs_missing" >&2
    exit 1
  fi
fi
unset langs_missing
WEBHOOKD_TEST_PYTHON=$(command -v python3)
WEBHOOKD_TEST_NODE=$(command -v node)
WEBHOOKD_TEST_GO=$(command -v go)
export WEBHOOKD_TEST_PYTHON WEBHOOKD_TEST_NODE WEBHOOKD_TEST_GO
