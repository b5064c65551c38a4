"""``ctloop replay``: a pipeline's own history of production batches and late labels, run through
the task functions the DAGs run, in their order, on a simulated clock, in a home of its own."""
