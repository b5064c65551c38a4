"""Metrics: their names and directions, a model scored on a holdout, and metrics computed under row
weights (for bootstraps and slices).
"""
