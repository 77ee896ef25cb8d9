"""The application layer: the ``ordinalclip`` command, sweeps, the demo and reports.

Everything here is built on the library (:mod:`ordinalclip.api`, :mod:`ordinalclip.exports`, ...); nothing in
the library imports this package (as ``open_clip_train`` sits on ``open_clip``).
"""
