"""failover: get a grid job's output files safely onto storage and into the file catalog."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
