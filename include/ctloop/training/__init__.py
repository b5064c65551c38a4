"""Building and fitting the estimator a spec describes, the steps of a training run, and what a
finished training records.
"""
