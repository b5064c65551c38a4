"""Pipelines' own training functions, named by ``estimator.train_function`` in their spec."""
