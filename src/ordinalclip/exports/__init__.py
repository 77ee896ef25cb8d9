"""Exports with torch: :mod:`~ordinalclip.exports.write` (safetensors / ONNX, int8 quantisation),
:mod:`~ordinalclip.exports.load` (a safetensors export back into torch) and
:mod:`~ordinalclip.exports.torch_backend` (a torch model behind :class:`ordinalclip.Predictor`).

The format itself (sidecar, checks) and running an ONNX export are torch-free: :mod:`ordinalclip.runtime`.
Nothing here imports :mod:`ordinalclip.engine` or Lightning.
"""
