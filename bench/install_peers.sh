#!/usr/bin/env bash
# Installs the peers the MLX benchmarks compare against into DIR (outside the repository; nothing here is
# committed), so that `bench/mlx_*.py --peers DIR` finds them. mlx_lm.server needs nothing: it is the mlx-lm
# in the gateway's own venv. Runs on Linux (CPU) and macOS (Metal) alike.
#
#   bench/install_peers.sh DIR            vllm-mlx and xgrammar into DIR/venv-vmlx (pulls torch: several GB on Linux),
#                                         Llama 3's tokenizer into DIR/llama3-tokenizer
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
"$dir/venv-vmlx/bin/pip" install -q "xgrammar==0.2.9" "llguidance==1.9.1" "tiktoken==0.14.0"
# A real vocabulary for `bench/grammar_engines.py --tokenizer DIR/llama3-tokenizer`: Llama 3's, from Meta's
# llama_models wheel (PyPI), converted by bench/llama3_tokenizer.py.
if [ ! -f "$dir/llama3-tokenizer/tokenizer.json" ]; then
  "$dir/venv-vmlx/bin/pip" download -q --no-deps -d "$dir/wheels" "llama_models==0.3.0"
  "$dir/venv-vmlx/bin/python" "$(dirname "$0")/llama3_tokenizer.py" "$dir"/wheels/llama_models-0.3.0-*.whl \
    "$dir/llama3-tokenizer"
fi

if [ "${2:-}" = openblas ]; then
  mkdir -p "$dir/openblas" && cd "$dir/openblas"
  apt-get download libopenblas0-pthread libgfortran5
  for f in *.deb; do dpkg -x "$f" root; done
  lib=$(dirname "$(find "$dir/openblas/root" -name libopenblas.so.0 -path '*openblas-pthread*' | head -1)")
  echo "--openblas $(find "$dir/openblas/root" -name libgfortran.so.5 | head -1):$lib/libopenblas.so.0"
fi
