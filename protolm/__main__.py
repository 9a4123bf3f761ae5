"""``python -m protolm <command> ...`` is the ``protolm`` command."""

from protolm.cli.app import main

main()
