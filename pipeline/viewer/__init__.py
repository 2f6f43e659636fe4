"""A local, read-only web viewer for rationale runs and training runs (``python -m pipeline.browse DIR serve``).

Modules, one job each: :mod:`.registry` (which folders under DIR may be served),
:mod:`.queries` (lazy DuckDB queries over a run's shards, through :mod:`pipeline.browse`),
:mod:`.training` (a trainer ``output_dir``'s files), :mod:`.describe` (manifest summaries),
:mod:`.charts` (inline SVG), :mod:`.web` (security headers, templates), :mod:`.app` (the
pages, routes and error pages) and :mod:`.server` (uvicorn: ``serve`` and the in-process
``ViewerThread``).
"""

from .app import create_app
from .server import ViewerThread, serve

__all__ = ["ViewerThread", "create_app", "serve"]
