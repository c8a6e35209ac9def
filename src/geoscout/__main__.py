"""``python -m geoscout``: the same as the ``geoscout`` command."""

from geoscout.cli import main

main()
