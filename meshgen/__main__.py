"""``python -m meshgen``: the same as the ``meshgen`` console script."""

from meshgen.cli import main

main()
