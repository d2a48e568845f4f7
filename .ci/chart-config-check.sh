#!/usr/bin/env bash
# The config.yaml the Helm chart renders must pass `webhookd check-config` with the env the
# chart sets: the chart and the binary agree on every key. Runs after .ci/helm.sh (which
# installs the offline renderer) and after a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${HELM_CHECK_VENV:-$HOME/.cache/helm-check-venv}
render=../shared/tools/helm-check/render.py
bin=${WEBHOOKD_BIN:-target/debug/webhookd}
[ -x "$bin" ] || cargo build --quiet --bin webhookd
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for variant in "" "--set metrics.port=9090"; do
  # shellcheck disable=SC2086
  "$venv/bin/python" "$render" helm/webhookd ci-release --kube-version v1.31.0 $variant > "$work/rendered.yaml" 2>"$work/err" \
    || { cat "$work/err"; exit 1; }
  python3 - "$work/rendered.yaml" "$work/config.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
for doc in text.split("\n---"):
    if "kind: ConfigMap" in doc:
        m = re.search(r"config\.yaml: \|\n((?:    .*\n|\n)+)", doc + "\n")
        if m:
            open(sys.argv[2], "w").write("\n".join(l[4:] for l in m.group(1).split("\n")))
            sys.exit(0)
sys.exit("no config.yaml in the rendered ConfigMap")
PY
  WEBHOOKD_REDIS__URL=redis://redis:6379 WEBHOOKD_HTTP__ADMIN_TOKENS=chart-check-admin-token \
  WEBHOOKD_SIGNING__ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64)" WEBHOOKD_STREAM__CONSUMER=pod-0 \
    "$bin" check-config --config "$work/config.yaml"
  echo "chart config (${variant:-defaults}) accepted by webhookd check-config"
done
