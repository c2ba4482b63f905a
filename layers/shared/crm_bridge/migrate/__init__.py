"""Moving the agency between CRMs: ``python -m crm_bridge.migrate backfill|reconcile`` (docs/migration.md).

An operator's tool, run from a checkout (``make backfill``, ``make reconcile``), not a Lambda: it
reads the same settings as the functions (both CRMs configured) and writes through the same
providers and field mapping as the live flow.
"""
