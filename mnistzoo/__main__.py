"""``python -m mnistzoo``: the same as the ``mnistzoo`` command."""

from .cli import main

main()
