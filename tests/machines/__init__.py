"""Machines used by the tests, one per module."""
