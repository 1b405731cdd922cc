"""``python -m alpha_panda.cli``: the ``alpha-panda`` command."""

from alpha_panda.cli import main

main()
