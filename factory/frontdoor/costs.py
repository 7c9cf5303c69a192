"""The cost note a front door shows before and after a submit, when the operator's backend is Hugging Face Jobs."""

from __future__ import annotations

from factory.base.errors import UserError
from factory.queue.compute import estimate_request


def cost_note(request, hub=None) -> str | None:
    """'Estimated cost on Hugging Face Jobs: ...' for a front door, when the operator's backend is hf-jobs."""
    from factory.queue.hf_jobs import backend

    if backend() != "hf-jobs":
        return None
    try:
        if hub is None:
            from factory.hub.choose import default_hub

            hub = default_hub(request.hub_endpoint)
        return f"Estimated cost on Hugging Face Jobs: {estimate_request(request, hub).short()}"
    except UserError as exc:
        return f"Cost on Hugging Face Jobs not estimated: {exc}"
