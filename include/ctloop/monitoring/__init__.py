"""Watching the champion in production: drift statistics, the Evidently report, one monitor run, the
retrain policy and retrain requests.
"""
