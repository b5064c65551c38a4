"""Tools for people working on ctloop, kept apart from the product: the demo, the example data
generator, the local deployment and the scheduler's preload.
"""
