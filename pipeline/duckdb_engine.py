"""DuckDB for the browsing commands, without the package's Python API layer when it can be skipped.

``import duckdb`` (duckdb >= 2.0) loads the engine's extension module ``_duckdb`` and then a
Python layer on top of it (the relational/expression API and a version lookup through
``importlib.metadata``): about 0.2 s of a ``python -m pipeline.browse DIR show ID`` that should
answer in < 0.5 s, while the engine alone imports in about 0.03 s. The browser only needs
``connect``, ``execute``/``cursor``/``fetchall``/``description`` and the exception classes, which
the extension module defines itself (the package re-exports them: ``duckdb.Error is
_duckdb.Error``), so it imports that module directly. duckdb 1.x has no top-level ``_duckdb``:
there the whole package is imported, as before.
"""

from __future__ import annotations

try:  # duckdb >= 2.0: the engine's own extension module
    import _duckdb as duckdb
except ImportError:  # duckdb 1.x
    import duckdb  # type: ignore[no-redef]

__all__ = ["duckdb"]
