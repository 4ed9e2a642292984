#!/usr/bin/env bash
# Install the CPU speech stack (torch, openai-whisper, pyannote.audio, torchaudio,
# torchcodec) into the interpreter/venv given as $1, as /work/shared/MODELS.md
# describes:
#   1. torch==2.13.0 first (CPU wheel from /opt/wheels when that directory exists);
#   2. openai-whisper==20250625 --no-deps (avoids ~1 GB of triton) + its CPU deps;
#   3. pyannote.audio==4.0.7 with torch pinned by a constraints file;
#   4. delete torchaudio's CUDA native libraries (torchaudio/lib/*.so) so that it
#      imports as pure Python;
#   5. torchcodec==0.13.0 (the last CPU build on the index);
#   6. faster-whisper==1.2.1 with ctranslate2==4.8.5 (its wheel runs on the CPU as
#      is), the optional CTranslate2 transcription engine (TRANSCRIBE_ENGINE).
# Idempotent: a stamp file named after this script's hash is written into the
# venv (sys.prefix) once the import check passes; later runs with the stamp
# present only do a cheap find_spec check and exit.
#
# Usage: scripts/install_speech_stack.sh .venv/bin/python
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 PYTHON   (e.g. $0 .venv/bin/python)" >&2
    exit 2
fi
PY="$1"
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    echo "install_speech_stack: ERROR: '$PY' is not a working Python interpreter" >&2
    exit 2
fi

TORCH_VERSION="2.13.0"
WHISPER_VERSION="20250625"
PYANNOTE_VERSION="4.0.7"
TORCHCODEC_VERSION="0.13.0"
FASTER_WHISPER_VERSION="1.2.1"
CTRANSLATE2_VERSION="4.8.5"
WHEEL_DIR="/opt/wheels"
export PYANNOTE_METRICS_ENABLED=false

script_hash="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
prefix="$("$PY" -c 'import sys; print(sys.prefix)')"
stamp="$prefix/.speech-stack-$script_hash"

# Cheap check (no heavy imports): stamp present and the packages still findable.
if [ -f "$stamp" ] && "$PY" - <<'PYEOF' >/dev/null 2>&1
import importlib.util, sys
names = ("torch", "whisper", "torchaudio", "pyannote.audio", "torchcodec", "faster_whisper",
         "ctranslate2")
sys.exit(0 if all(importlib.util.find_spec(n) for n in names) else 1)
PYEOF
then
    echo "install_speech_stack: already installed ($stamp)"
    exit 0
fi

start=$SECONDS
pip_args=(install --quiet --disable-pip-version-check --no-input)
if [ -d "$WHEEL_DIR" ]; then
    pip_args+=(--find-links "$WHEEL_DIR")
fi

tmpdir="$(mktemp -d)"
trap 'rm -rf "$tmpdir"' EXIT
constraints="$tmpdir/constraints.txt"
# torch must never move; torchcodec>=0.14 on the index are CUDA builds.
printf 'torch==%s\ntorchcodec==%s\n' "$TORCH_VERSION" "$TORCHCODEC_VERSION" > "$constraints"

pip_install() {
    echo "+ $PY -m pip ${pip_args[*]} $*"
    "$PY" -m pip "${pip_args[@]}" "$@"
}

# 1. torch first, so nothing later can pick a CUDA build.
pip_install "torch==$TORCH_VERSION"

# 2. openai-whisper without triton, then its CPU runtime deps.
pip_install --no-deps "openai-whisper==$WHISPER_VERSION"
pip_install -c "$constraints" more-itertools numba numpy tiktoken tqdm

# 3. pyannote.audio, never upgrading torch.
pip_install -c "$constraints" "pyannote.audio==$PYANNOTE_VERSION"

# 4. torchaudio as pure Python: its CUDA native libraries cannot load here.
ta_lib="$("$PY" - <<'PYEOF'
import importlib.util, os
spec = importlib.util.find_spec("torchaudio")
if spec and spec.submodule_search_locations:
    print(os.path.join(list(spec.submodule_search_locations)[0], "lib"))
PYEOF
)"
if [ -n "$ta_lib" ] && [ -d "$ta_lib" ]; then
    find "$ta_lib" -maxdepth 1 -type f -name '*.so*' -print -delete
fi

# 5. torchcodec CPU build.
pip_install -c "$constraints" "torchcodec==$TORCHCODEC_VERSION"

# 6. faster-whisper and CTranslate2, never upgrading torch.
pip_install -c "$constraints" "faster-whisper==$FASTER_WHISPER_VERSION" \
    "ctranslate2==$CTRANSLATE2_VERSION"

# Verify.
"$PY" - <<'PYEOF'
import torch, whisper, torchaudio, pyannote.audio, faster_whisper, ctranslate2  # noqa: F401
print("install_speech_stack: torch", torch.__version__, "| torchaudio", torchaudio.__version__,
      "| pyannote.audio", pyannote.audio.__version__, "| faster-whisper",
      faster_whisper.__version__, "| ctranslate2", ctranslate2.__version__)
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
PYEOF

rm -f "$prefix"/.speech-stack-*
touch "$stamp"
echo "install_speech_stack: done in $((SECONDS - start)) s ($stamp)"
