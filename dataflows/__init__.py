"""Bytewax wiring: each module exposes ``flow`` for ``python -m bytewax.run dataflows.<name>``."""
