"""Housekeeping: what ctloop's storage and registry may forget, and forgetting it safely."""
