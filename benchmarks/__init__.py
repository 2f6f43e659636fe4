"""Performance benchmarks of the MIND toolkit.

Each benchmark is a module run from the repository root::

    python -m benchmarks.synthesis [--quick]

It shows its progress on stderr, writes its full numbers to ``benchmarks/results/<name>.json``
(small, meant to be committed; ``--quick`` runs write ``<name>.quick.json``, which is not) and
prints its headline figures as one JSON object on the last line of stdout.
"""
