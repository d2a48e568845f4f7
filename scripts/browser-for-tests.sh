#!/usr/bin/env bash
# Sourced by scripts/test.sh: the portal's browser tests drive Debian's headless Chromium
# through its WebDriver. Installs both from Debian's packages when missing (as root) and
# exports where they are.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing: chromium chromium-driver (the portal's browser tests)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "the portal's browser tests need Chromium and its driver: apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
fi
WEBHOOKD_TEST_CHROMIUM=$(command -v chromium)
WEBHOOKD_TEST_CHROMEDRIVER=$(command -v chromedriver)
export WEBHOOKD_TEST_CHROMIUM WEBHOOKD_TEST_CHROMEDRIVER
