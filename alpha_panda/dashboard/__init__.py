"""The read API and live dashboard of ``alpha-panda serve``."""
