#!/usr/bin/env bash
# Add learn2learn's meta-RL example to the peers venv (run benchmarks/peers/setup.sh first):
# cherry-rl and the old `gym` it needs, in a folder of their own (pip --target), and
# learn2learn 0.2.0's examples/rl/ from its PyPI sdist (the examples are not in the installed
# package). benchmarks/rl_speed.py then times examples/rl/maml_trpo.py against metalearn.
#
# Usage:  benchmarks/peers/setup_rl.sh          # quick when already done
# Env:    PEERS_VENV (default benchmarks/.venv-peers)
#
# Why these versions (each seen failing here with torch 2.13 / numpy 2):
#   cherry-rl 0.1.4: its LinearValue calls torch.lstsq, removed from torch;
#   cherry-rl 0.2.0 with gym 0.26 (the peers venv's): imports gym's ImageEncoder, gone in 0.26;
#   gym 0.22.0 has it; cherry 0.2.0 also imports six and dotmap (not declared).
# gym prints a warning that it is unmaintained and does not support NumPy 2; the 2-D
# navigation task (learn2learn's Particles2D-v1) runs.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${PEERS_VENV:-$ROOT/benchmarks/.venv-peers}"
SITE="$VENV/rl-site"
EXAMPLES="$VENV/l2l-examples"
L2L_VERSION=0.2.0
STAMP="$VENV/.peers-rl-ok"
RECIPE_HASH="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "no peers venv at $VENV: run benchmarks/peers/setup.sh first" >&2
    exit 1
fi
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE_HASH" ]]; then
    echo "peers RL pieces up to date: $SITE, $EXAMPLES"
    exit 0
fi
PIP=(nice -n 10 "$VENV/bin/python" -m pip --disable-pip-version-check)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "== cherry-rl 0.2.0, gym 0.22.0, six, dotmap into $SITE (no deps: nothing else changes)"
rm -rf "$SITE"
"${PIP[@]}" install -q --no-deps --target "$SITE" "cherry-rl==0.2.0" "gym==0.22.0" six dotmap

echo "== learn2learn $L2L_VERSION examples/rl from the sdist into $EXAMPLES"
"${PIP[@]}" download -q --no-deps --no-binary :all: -d "$WORK" "learn2learn==$L2L_VERSION"
rm -rf "$EXAMPLES"
mkdir -p "$EXAMPLES"
tar -xzf "$WORK/learn2learn-$L2L_VERSION.tar.gz" -C "$WORK" "learn2learn-$L2L_VERSION/examples/rl"
mv "$WORK/learn2learn-$L2L_VERSION/examples/rl" "$EXAMPLES/rl"

echo "== checking: the example imports"
(cd "$EXAMPLES/rl" && PYTHONPATH="$SITE" "$VENV/bin/python" -W ignore -c "
import sys; sys.path.insert(0, '$HERE')
from shim import import_learn2learn; import_learn2learn()
import maml_trpo, gym, cherry
print('learn2learn examples/rl/maml_trpo.py imports: gym', gym.__version__, 'cherry', cherry.__version__)
")
echo "$RECIPE_HASH" > "$STAMP"
