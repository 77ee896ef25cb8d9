#!/usr/bin/env bash
# The wheel as a user gets it: build it, install it into a fresh virtual environment outside the source tree, and
# run the documented commands there (configs, a seconds-long train, export to safetensors and ONNX, predict, the
# served page's file). Torch and the other dependencies are reused from the project's venv (PY), never downloaded:
# the fresh venv sees that venv's site-packages through a .pth line (plain path entries only, so the project's
# editable install of ordinalclip does not come along), and pip installs with --no-index, so a dependency the
# wheel declares but the environment lacks fails here instead of being fetched. Then the same for the runtime
# wheel (packaging/runtime): a second fresh venv that sees only the runtime's declared dependencies (numpy, Pillow,
# PyYAML, onnxruntime, the serve stack) of the project's venv, so no torch: it predicts and serves the ONNX export.
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
diff = max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in x if k.startswith(("exp_", "p_")))
assert diff <= 1e-4, diff
print(f"{len(a)} images: onnx vs safetensors, max |difference| of expectation and probabilities = {diff:.1e}")
row = oc.load("model.onnx").predict(os.path.join(os.environ["IMAGES"], b[0]["path"]))[0]
# the headline prediction (rank, and which one it is) and the argmax, as the CSV says
assert row["prediction"] == b[0]["prediction"] and row["rank"] == int(b[0]["rank"]), (row, b[0])
assert row["pred_rank"] == int(b[0]["pred_rank"]) and abs(row["expectation"] - float(b[0]["exp_value"])) < 1e-5
print(f"oc.load('model.onnx').predict: {row['prediction']} rank {row['rank']}, argmax rank {row['pred_rank']}, "
      f"expectation {row['expectation']:.3f}, as the CSV says")
page = resources.files("ordinalclip.app").joinpath("serve_page.html").read_text(encoding="utf-8")
assert 'id="drop"' in page
PYEOF

step "the runtime wheel (ordinalclip-runtime[serve]) in a second fresh venv: no torch anywhere"
RTWHEEL=$("$PY" "$REPO/packaging/runtime/build_wheel.py" "$WORK/dist-runtime" "$PY")
"$BASE/bin/python3" -m venv --without-pip "$WORK/rt"
RTPY="$WORK/rt/bin/python"
# its dependencies come from the project's venv as a view holding exactly the distributions the runtime
# declares (and theirs), so nothing is downloaded and torch cannot come along
echo "$WORK/rt-view" > "$("$RTPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_runtime_deps.pth"
DEPS=$("$PY" "$REPO/packaging/runtime/installed.py" view "$WORK/rt-view" numpy pillow pyyaml onnxruntime fastapi \
  uvicorn python-multipart)
echo "runtime dependencies: $DEPS"
case " $DEPS " in *" torch "*|*" lightning "*|*" open-clip-torch "*|*" transformers "*|*" timm "*)
  echo "the runtime's dependencies include the training stack" >&2; exit 1;; esac
"$PY" -m pip --python "$RTPY" install --quiet --no-index --no-warn-script-location "$RTWHEEL[serve]"
"$RTPY" - <<'PYEOF'
import importlib.util
for name in ("torch", "torchvision", "lightning", "open_clip", "timm", "transformers"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable in the runtime venv"
print("the runtime venv has no torch, torchvision, lightning, open_clip, timm or transformers")
PYEOF
"$WORK/rt/bin/ordinalclip" predict model.onnx "$IMAGES" -o pred-runtime.csv --probabilities
cmp pred-runtime.csv pred-onnx.csv && echo "ordinalclip predict on the runtime: the same CSV as the full install"
PORT=$("$RTPY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$WORK/rt/bin/ordinalclip" serve model.onnx --port "$PORT" > serve.log 2>&1 &
SERVER=$!
"$RTPY" - "$PORT" <<'PYEOF'
import csv, json, os, sys, time, urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(300):
    try:
        health = json.load(urllib.request.urlopen(url + "/health", timeout=1))
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("the runtime server did not come up: " + open("serve.log").read())
first = next(csv.DictReader(open("pred-runtime.csv")))
data = open(os.path.join(os.environ["IMAGES"], first["path"]), "rb").read()
body = (b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n"
        b"Content-Type: image/png\r\n\r\n" + data + b"\r\n--x--\r\n")
request = urllib.request.Request(url + "/predict", body, {"Content-Type": "multipart/form-data; boundary=x"})
row = json.load(urllib.request.urlopen(request, timeout=30))["predictions"][0]
assert row["prediction"] == first["prediction"] == health["prediction"] and row["rank"] == int(first["rank"])
assert row["pred_rank"] == int(first["pred_rank"]) and abs(row["expectation"] - float(first["exp_value"])) < 1e-5
print(f"ordinalclip serve on the runtime: {health['num_ranks']} ranks; /predict gives the {row['prediction']} "
      f"rank {row['rank']} (argmax {row['pred_rank']}) as the CSV")
PYEOF
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
"$RTPY" "$REPO/packaging/runtime/installed.py" size "ordinalclip-runtime[serve]" > sizes.json
"$PY" "$REPO/packaging/runtime/installed.py" size "ordinalclip[onnx,serve]" >> sizes.json
echo "size on disk (MB, every distribution of the install): $(tr '\n' ' ' < sizes.json)"

step "wheel check passed"
