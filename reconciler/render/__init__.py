"""Rendering: views of plans, drift, graphs and state for people and machines.

``common`` holds what the views share; ``text``, ``json``, ``markdown`` and ``graph`` are the views,
and no view imports another. ``render_drift`` picks a drift view by ``--format`` (a plan's view is
picked by the CLI, ``cli.plan_cmds.render_plan``, which adds what only a terminal shows); each view is
imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.plan.types import DriftItem, Plan

FORMATS = ("text", "json", "markdown")  #: every view of a plan and of drift (``--format``)


def render_drift(
    drift: list[DriftItem],
    fmt: str = "text",
    plan: Plan | None = None,
    color: bool = False,
    location: str | None = None,
) -> str:
    """``recon drift`` output in ``fmt``. Drift (recorded -> actual) is named per resource and
    attribute and kept apart from pending changes, which are only summarised when ``plan`` is given.
    ``location`` (markdown only) says where the full report is when the markdown is shortened."""
    if fmt == "text":
        from reconciler.render.text import render_drift_text

        return render_drift_text(drift, plan=plan, color=color)
    if fmt == "json":
        from reconciler.render.json import render_drift_json

        return render_drift_json(drift, plan)
    if fmt == "markdown":
        from reconciler.render.markdown import render_drift_markdown

        return render_drift_markdown(drift, plan=plan, report_location=location)
    raise ValueError(f"unknown drift format {fmt!r} (expected text, json or markdown)")


__all__ = ["FORMATS", "render_drift"]
