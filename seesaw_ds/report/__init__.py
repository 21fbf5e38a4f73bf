"""Human-readable views of a plan: a text table and a PNG."""

from seesaw_ds.report.table import format_plan_table

__all__ = ["format_plan_table"]
