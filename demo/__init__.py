"""The demo: the whole platform story on the embedded default (``python -m demo``, ``scripts/demo``).

A driver of the product, beside ``flows/``, not part of it: ``story`` runs sign-up, trading on
the paper exchange and the production flows, and prints the summary; ``prefect_server`` runs
those flows on a Prefect server over the demo's own Prefect home. docs/demo.md tells the why.
"""

from demo.story import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
