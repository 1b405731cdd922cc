"""Smoke tests of ``alpha-panda bench``."""
