#!/usr/bin/env bash
# Create .venv and install tympan with its extras.
# Exactly one onnxruntime flavour may be installed: with both `onnxruntime` and
# `onnxruntime-gpu` present the CUDA provider silently disappears, so the other
# flavour is uninstalled first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-cpu,train,dev}
ORT=${ORT:-cpu}

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
case "$ORT" in
  cpu) other=onnxruntime-gpu ;;
  gpu) other=onnxruntime ;;
  *) echo "ORT must be cpu or gpu, not '$ORT'" >&2; exit 2 ;;
esac
if .venv/bin/python -m pip show -q "$other" >/dev/null 2>&1; then
  echo "==> removing $other (only one onnxruntime flavour may be installed)"
  .venv/bin/python -m pip uninstall -y -q "$other"
fi
echo "==> installing tympan[$EXTRAS] into .venv"
.venv/bin/python -m pip install -q -e ".[$EXTRAS]"
.venv/bin/python - <<'PY'
import importlib.metadata as md
have = []
for dist in ("onnxruntime", "onnxruntime-gpu"):
    try:
        md.version(dist)
        have.append(dist)
    except md.PackageNotFoundError:
        pass
if len(have) != 1:
    raise SystemExit(f"expected exactly one onnxruntime flavour, found {have or 'none'}")
print(f"==> onnxruntime flavour: {have[0]}")
PY
