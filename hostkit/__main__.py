"""``python -m hostkit``: the same as the ``hostkit`` command."""

from hostkit.cli import main

raise SystemExit(main())
