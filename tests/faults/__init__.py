"""Fault-injection, bad-input and soak tests against real sidecar processes."""
