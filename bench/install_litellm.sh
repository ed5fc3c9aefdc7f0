#!/usr/bin/env bash
# Installs LiteLLM's proxy into DIR/venv-litellm (outside the repository; nothing here is committed), so that
# `bench/upstream_overhead.py --litellm DIR` can compare the gateway's upstream adapter with it in the same run.
#
#   bench/install_litellm.sh DIR
set -euo pipefail
dir=${1:?usage: bench/install_litellm.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
python=${PYTHON:-python3}
if [ ! -x "$dir/venv-litellm/bin/litellm" ]; then
  "$python" -m venv "$dir/venv-litellm"
  "$dir/venv-litellm/bin/pip" install -q "litellm[proxy]==1.106.12" || "$dir/venv-litellm/bin/pip" install -q "litellm[proxy]"
fi
echo "litellm: $("$dir/venv-litellm/bin/pip" show litellm | sed -n 's/^Version: //p') in $dir/venv-litellm"
