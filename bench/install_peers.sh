#!/usr/bin/env bash
# Installs the peers the MLX benchmarks compare against into DIR (outside the repository; nothing here is
# committed), so that `bench/mlx_*.py --peers DIR` finds them. mlx_lm.server needs nothing: it is the mlx-lm
# in the gateway's own venv. Runs on Linux (CPU) and macOS (Metal) alike.
#
#   bench/install_peers.sh DIR            vllm-mlx and xgrammar into DIR/venv-vmlx (pulls torch: several GB on Linux)
#   bench/install_peers.sh DIR openblas   also Debian's OpenBLAS into DIR/openblas (Linux; for --openblas)
set -euo pipefail
dir=${1:?usage: bench/install_peers.sh DIR [openblas]}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
python=${PYTHON:-python3}

if [ ! -x "$dir/venv-vmlx/bin/vllm-mlx" ]; then
  "$python" -m venv "$dir/venv-vmlx"
  if [ "$(uname -s)" = Darwin ]; then mlx=mlx; else mlx="mlx[cpu]"; fi
  "$dir/venv-vmlx/bin/pip" install -q "vllm-mlx==0.6.0" "$mlx"
fi
echo "vllm-mlx: $("$dir/venv-vmlx/bin/pip" show vllm-mlx | sed -n 's/^Version: //p') in $dir/venv-vmlx"
# bench/grammar_engines.py: xgrammar (it needs torch, which vllm-mlx already brought) beside the llguidance
# version the gateway runs.
"$dir/venv-vmlx/bin/pip" install -q "xgrammar==0.2.9" "llguidance==1.9.1"

if [ "${2:-}" = openblas ]; then
  mkdir -p "$dir/openblas" && cd "$dir/openblas"
  apt-get download libopenblas0-pthread libgfortran5
  for f in *.deb; do dpkg -x "$f" root; done
  lib=$(dirname "$(find "$dir/openblas/root" -name libopenblas.so.0 -path '*openblas-pthread*' | head -1)")
  echo "--openblas $(find "$dir/openblas/root" -name libgfortran.so.5 | head -1):$lib/libopenblas.so.0"
fi
