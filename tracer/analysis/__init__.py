"""Scoring records into findings: accuracy, uncertainty, failures, triage, flags, transfer,
cross-validation and the domain out of fold (pure functions of predictions and records)."""
