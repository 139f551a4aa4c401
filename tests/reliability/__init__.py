"""Reliability and security proofs: faults, back-pressure, hostile input, soak, hygiene."""
