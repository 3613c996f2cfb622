"""``python -m fem_eigopt``: see :mod:`fem_eigopt.cli`."""

from .cli import main

raise SystemExit(main())
