"""A user's own feature and training modules, as a spec names them (tests only)."""
