"""Is the data fit to use: schema checks from the spec, the Great Expectations suite, and the suite
that follows the champion.
"""
