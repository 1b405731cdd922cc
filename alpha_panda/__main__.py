"""``python -m alpha_panda``: the ``alpha-panda`` command."""

from alpha_panda.cli import main

main()
