"""Rendering: views of plans, drift, graphs and state for people and machines.

``common`` holds what the views share; ``text``, ``json``, ``markdown`` and ``graph`` are the views,
and no view imports another. ``render_plan`` and ``render_drift`` pick a view by ``--format``; each
view is imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.plan.types import DriftItem, Plan

FORMATS = ("text", "json", "markdown")


def render_plan(plan: Plan, fmt: str = "text", color: bool = False, **markdown_options: Any) -> str:
    """A plan in ``fmt``: text, json or markdown (options go to ``markdown.render_markdown``)."""
    if fmt == "text":
        from reconciler.render.text import render_text

        return render_text(plan, color=color)
    if fmt == "json":
        from reconciler.render.json import render_json

        return render_json(plan)
    if fmt == "markdown":
        from reconciler.render.markdown import render_markdown

        return render_markdown(plan, **markdown_options)
    raise ValueError(f"unknown plan format {fmt!r} (expected text, json or markdown)")


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


__all__ = ["FORMATS", "render_drift", "render_plan"]
