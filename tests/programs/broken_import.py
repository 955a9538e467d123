"""A module that fails while it is imported, for `hostkit run broken_import:app`."""

raise ImportError("a dependency of the app is missing (on purpose)")
