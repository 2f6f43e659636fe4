"""Synthesis library: question sources, the synthetic world, verification, ingest and browse.

``pipeline`` never imports ``distill``.
"""
