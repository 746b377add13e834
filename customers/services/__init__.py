"""The customers app's write layer: pulls (pulls.py), and the helpers they build on."""

from .pulls import PullInputError, PullStarted, start_customer_pull, start_demo_pulls

__all__ = ["PullInputError", "PullStarted", "start_customer_pull", "start_demo_pulls"]
