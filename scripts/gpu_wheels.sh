#!/usr/bin/env bash
# `make gpu-wheels`: wheels of what the GPU machine may lack, in .whl/, for scripts/gpu_check.sh
# to install there. That machine has Python 3.12 and its own torch, torchvision, numpy and
# Pillow, and no network: lsvr's other small dependencies (simplejpeg, braceexpand, tqdm, PyYAML)
# and pytest with pytest-timeout (cuda_tests) come from here, pip resolving pytest's requirements
# (pluggy, iniconfig, packaging, pygments), all for CPython 3.12 on manylinux x86_64. The preflight
# (scripts/gpu_preflight.py) then imports every one of them there, naming any still missing.
# Offline: the wheels already in .whl/ are kept when they cover every package, else it says
# which are missing and exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# without their requirements: simplejpeg's numpy would shadow the one the machine's torch was built with
ALONE=(simplejpeg==1.9.0 braceexpand tqdm pyyaml)
WITH_REQUIREMENTS=(pytest pytest-timeout)
COVER=(simplejpeg braceexpand tqdm pyyaml pytest pytest_timeout pluggy iniconfig packaging pygments)
mkdir -p .whl
grep -qxF /.whl/ .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude  # never committed
download() {
  "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$@"
}
if download --no-deps "${ALONE[@]}" && download "${WITH_REQUIREMENTS[@]}"; then
  echo "gpu-wheels: .whl/ holds $(ls .whl/*.whl | wc -l) wheels for CPython 3.12 (manylinux x86_64):"
  ls .whl
  exit 0
fi
missing=()
for name in "${COVER[@]}"; do
  ls .whl 2>/dev/null | grep -qi "^${name}-" || missing+=("$name")
done
if ((${#missing[@]} == 0)); then
  echo "gpu-wheels: pip download failed (offline?); .whl/ already holds a wheel of each of ${COVER[*]}: kept" >&2
  exit 0
fi
echo "gpu-wheels: pip download failed (offline?) and .whl/ lacks ${missing[*]}: run \`make gpu-wheels\` where" \
  "there is network and copy .whl/ here, or put CPython 3.12 manylinux x86_64 wheels of them in .whl/" >&2
exit 1
