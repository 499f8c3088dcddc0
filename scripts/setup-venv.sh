#!/usr/bin/env bash
# Create .venv and install tympan with its extras, at the versions pinned by
# requirements-dev.lock (`make lock` regenerates it from pyproject.toml).
# Exactly one onnxruntime flavour may be installed: with both `onnxruntime` and
# `onnxruntime-gpu` present the CUDA provider silently disappears, so the other
# flavour is uninstalled first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-cpu,train,dev}
ORT=${ORT:-cpu}
# Where the environment goes; another path gives a throwaway install from the lock.
VENV=${VENV:-.venv}
LOCK=${LOCK:-requirements-dev.lock}
[ -f "$LOCK" ] || { echo "no lock file $LOCK: run make lock" >&2; exit 2; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
case "$ORT" in
  cpu) other=onnxruntime-gpu ;;
  gpu) other=onnxruntime ;;
  *) echo "ORT must be cpu or gpu, not '$ORT'" >&2; exit 2 ;;
esac
if "$VENV/bin/python" -m pip show -q "$other" >/dev/null 2>&1; then
  echo "==> removing $other (only one onnxruntime flavour may be installed)"
  "$VENV/bin/python" -m pip uninstall -y -q "$other"
fi
# The lock pins every package of the cpu,train,dev extras (Linux x86-64, Python 3.11) and
# acts as constraints: whatever the extras ask for comes at the locked version. A package
# outside the lock (onnxruntime-gpu with ORT=gpu) is resolved from its pyproject range.
echo "==> installing tympan[$EXTRAS] into $VENV from $LOCK"
"$VENV/bin/python" -m pip install -q -c "$LOCK" -e ".[$EXTRAS]"
"$VENV/bin/python" - <<'PY'
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
