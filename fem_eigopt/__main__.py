"""``python -m fem_eigopt``: see :mod:`fem_eigopt.cli`."""

from fem_eigopt.cli import main

raise SystemExit(main())
