"""``python -m cli`` is ``unitsync``."""

from . import main

main()
