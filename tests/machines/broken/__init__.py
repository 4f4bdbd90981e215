"""
Broken machine specs, one per module: importing any of them raises ``InvalidMachine``.

The tests import them by file path, so each module is executed afresh on every import.
"""
