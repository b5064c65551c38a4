"""Production batches scored by the champion, each once: the scored-batch record, the prediction log
and late labels.
"""
