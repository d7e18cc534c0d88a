"""Tests of the storage layer: one shared contract suite (contract_suite.py) and one module per backend."""
