"""The sub-commands of ``ordinalclip``, one module per family; :mod:`ordinalclip.app.cli` puts them
together."""
