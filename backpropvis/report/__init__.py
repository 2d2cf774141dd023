"""The report of a run: :mod:`.page` (``DIR/<experiment>/metrics.json`` -> ``DIR/index.html``)
and :mod:`.readings` (the words beside each figure and the explained findings; data only).
The page's functions are re-exported here (``backpropvis.report.write_index``)."""

from .page import (
    INDEX_FILE,
    PAGE_STYLE,
    claims_table,
    collect_results,
    embedded_png,
    failing_claims_table,
    format_value,
    shared_notes,
    summary_table,
    write_index,
    write_result,
)

__all__ = [
    "INDEX_FILE",
    "PAGE_STYLE",
    "write_result",
    "collect_results",
    "write_index",
    "summary_table",
    "claims_table",
    "embedded_png",
    "format_value",
    "failing_claims_table",
    "shared_notes",
]
