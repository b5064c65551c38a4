"""The MLflow side of the loop: tracking runs and registered versions, provenance, the compare-and-set
promotion, the promotion ledger, rollback and model cards.
"""
