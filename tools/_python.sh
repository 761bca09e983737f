# Sourced by the launch scripts: sets PYTHON to the repository's .venv python when there is one (no
# activation needed), else the python on PATH, unless PYTHON is set already; exits 2 with one line when
# that python cannot import the packages. Expects ROOT (the repository folder).
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python; fi
fi
if ! "$PYTHON" -c "import torch, deepspeed, video_sparse" 2>/dev/null; then
    echo "error: $PYTHON cannot import torch, deepspeed and video_sparse; run bash tools/setup_env.sh" \
         "or set PYTHON=/path/to/python" >&2
    exit 2
fi
