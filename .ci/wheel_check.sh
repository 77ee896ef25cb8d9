#!/usr/bin/env bash
# The wheel as a user gets it: build it, install it into a fresh virtual environment outside the source tree, and
# run the documented commands there (configs, a seconds-long train, export to safetensors and ONNX, predict, the
# served page's file). Torch and the other dependencies are reused from the project's venv (PY), never downloaded:
# the fresh venv sees that venv's site-packages through a .pth line (plain path entries only, so the project's
# editable install of ordinalclip does not come along), and pip installs with --no-index, so a dependency the
# wheel declares but the environment lacks fails here instead of being fetched.
#
#   .ci/wheel_check.sh [PYTHON]      (default .venv/bin/python; make test runs it)
set -euo pipefail

PY=${1:-${PY:-.venv/bin/python}}
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ordinalclip-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "build the wheel from a copy of the tree (tracked and new files; nothing written into the checkout)"
mkdir -p "$WORK/src" "$WORK/dist"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation "$WORK/src" -w "$WORK/dist"
WHEEL=$(ls "$WORK"/dist/ordinalclip-*.whl)
"$PY" - "$WHEEL" <<'PYEOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
configs = [n for n in names if n.startswith("ordinalclip/configs/") and n.endswith(".yaml")]
assert "ordinalclip/configs/tiny.yaml" in names and "ordinalclip/configs/ablations/morph_inv_prop.yaml" in names
assert "ordinalclip/app/serve_page.html" in names, "the served page is missing from the wheel"
assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))], "tests or benchmarks in the wheel"
print(f"{sys.argv[1].rsplit('/', 1)[-1]}: {len(names)} files, {len(configs)} built-in configs")
PYEOF

step "a fresh venv outside the tree, on top of the project's site-packages"
BASE=$("$PY" -c 'import sys; print(sys.base_prefix)')
# --without-pip: a venv's own pip and setuptools would shadow the project's (torch requires a newer setuptools);
# the project's pip installs into it with --python.
"$BASE/bin/python3" -m venv --without-pip "$WORK/venv"
VPY="$WORK/venv/bin/python"
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$SITE" > "$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_project_deps.pth"
"$PY" -m pip --python "$VPY" install --quiet --no-index --no-warn-script-location "$WHEEL[onnx,serve]"

mkdir -p "$WORK/user"
cd "$WORK/user"
export ORDINALCLIP_CACHE="$WORK/cache" PATH="$WORK/venv/bin:$PATH"
unset PYTHONPATH
"$VPY" - <<'PYEOF'
import ordinalclip, pathlib, sys
where = pathlib.Path(ordinalclip.__file__).resolve()
assert "site-packages" in where.parts and "ordinalclip-wheel" in str(where), f"imported from {where}"
print("ordinalclip from", where.parent)
PYEOF

step "ordinalclip configs"
ordinalclip configs > configs.txt && head -4 configs.txt && echo "... ($(wc -l < configs.txt) built-in configs)"
ordinalclip configs show tiny > tiny.yaml && head -2 tiny.yaml
"$VPY" -c "from ordinalclip.config import load_run_config as l; c = l(['ablations/morph_inv_prop']); \
print('base chain inside the installed package:', c.name, c.model.num_ranks, c.model.prompts.interpolation)"

step "ordinalclip train -c tiny"
ordinalclip train -c tiny --run-dir run --set trainer.max_epochs=1

step "ordinalclip export (safetensors and onnx)"
ordinalclip export run --out model.safetensors
ordinalclip export run --format onnx -o model.onnx
ls model.safetensors model.json model.onnx model.onnx.json >/dev/null

step "ordinalclip predict (safetensors and onnx), oc.load"
export IMAGES=$(ls -d "$ORDINALCLIP_CACHE"/demo-blur-*/images | head -1)
ordinalclip predict model.safetensors "$IMAGES" -o pred-safetensors.csv --probabilities
ordinalclip predict model.onnx "$IMAGES" -o pred-onnx.csv --probabilities
"$VPY" - <<'PYEOF'
import csv
import os
from importlib import resources

import ordinalclip as oc

a, b = (list(csv.DictReader(open(f"pred-{m}.csv"))) for m in ("safetensors", "onnx"))
assert len(a) == len(b) > 0 and [r["path"] for r in a] == [r["path"] for r in b]
diff = max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in x if k.startswith(("pred_exp", "p_")))
assert diff <= 1e-4, diff
print(f"{len(a)} images: onnx vs safetensors, max |difference| of expectation and probabilities = {diff:.1e}")
row = oc.load("model.onnx").predict(os.path.join(os.environ["IMAGES"], b[0]["path"]))[0]
assert row["rank"] == int(b[0]["pred_rank"]) and abs(row["expectation"] - float(b[0]["pred_exp"])) < 1e-5
print(f"oc.load('model.onnx').predict: rank {row['rank']}, expectation {row['expectation']:.3f}, as the CSV says")
page = resources.files("ordinalclip.app").joinpath("serve_page.html").read_text(encoding="utf-8")
assert 'id="drop"' in page
PYEOF

step "wheel check passed"
