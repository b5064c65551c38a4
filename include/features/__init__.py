"""Pipelines' own feature code: one module per pipeline, named by ``features.factory`` in its spec."""
