"""May a candidate serve: gate rules and their checks, the paired bootstrap, slices, latency, model
validity and human approval.
"""
