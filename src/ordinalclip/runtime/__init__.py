"""The deploy runtime: what runs an ONNX export, with no torch, Lightning or tower library.

* :mod:`~ordinalclip.runtime.sidecar`: the export format's sidecar (paths, digests, checks of every entry);
* :mod:`~ordinalclip.runtime.decode`: the one image decoder (orientation, ICC, bit depth, transparency);
* :mod:`~ordinalclip.runtime.preprocess`: the sidecar's eval transform in PIL + numpy (torchvision's pixels);
* :mod:`~ordinalclip.runtime.onnx`: the graph in an onnxruntime session;
* :mod:`~ordinalclip.runtime.predictor`: :class:`Predictor` (probabilities, expectation, rank, value, name);
* :mod:`~ordinalclip.runtime.predictions`: the predictions CSV, each column naming its unit.

It imports numpy, Pillow, PyYAML and onnxruntime only (``tests/unit/test_layers.py`` holds it to that), and
ships alone as the ``ordinalclip-runtime`` wheel (``packaging/runtime``).
"""
