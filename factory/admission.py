"""The door every queued request passes, whichever front door it came through (and the Space's live check).

CLI (`factory submit`, the operator's): schema, grants for local files, eval tasks, lint.
Space and Discord (strangers): first who they are (hf:<user> / discord:<id>), plain small YAML
(yaml_guard), no key that reaches the worker's disk or Python, Hub ids only, their own namespace and
the operator's bounds (remote_policy); then everything the CLI passes.
"""

from __future__ import annotations

import re

from factory.config import Request, loads_request, parse_request
from factory.errors import UserError

FRONT_DOORS = ("cli", "discord", "space")
SUBMITTER_FORMS = {"space": re.compile(r"^hf:[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"),
                   "discord": re.compile(r"^discord:[0-9]{5,25}$")}


def check_submitter(submitter: str, front_door: str) -> None:
    """Who is who: Space users are hf:<username>, Discord users discord:<user id>."""
    if not isinstance(submitter, str) or not submitter or len(submitter) > 200:
        raise UserError("submitter must be a non-empty name of at most 200 characters")
    form = SUBMITTER_FORMS.get(front_door)
    if form is not None and not form.match(submitter):
        want = "hf:<username>" if front_door == "space" else "discord:<user id>"
        raise UserError(f"submitter: '{submitter}' is not {want}, the identity {front_door} requests carry")


def admit(request: Request | str, submitter: str, front_door: str) -> Request:
    """The validated request as it will be queued, or a UserError naming the rule it breaks."""
    from factory.checks import check_request
    from factory.grants import check_queued

    if front_door not in FRONT_DOORS:
        raise UserError(f"front_door must be one of {', '.join(FRONT_DOORS)}, not {front_door!r}")
    check_submitter(submitter, front_door)
    source = f"{front_door} request"
    if front_door != "cli":
        request = _stranger(request, submitter, source)
    elif isinstance(request, str):
        request = loads_request(request, source)
    if request.output_dir:
        raise UserError("output_dir cannot be set on a queued job: the worker keeps its run folder in "
                        "$FACTORY_HOME/runs/job-<id>; remove the key")
    check_queued(request, source)  # before anything reads a local file it names
    check_request(request, source)
    return request


def _stranger(request: Request | str, submitter: str, source: str) -> Request:
    from factory import remote_policy
    from factory.yaml_guard import load_untrusted

    if isinstance(request, str):
        data = load_untrusted(request, source)
        remote_policy.check_raw(data, source)
        request = parse_request(data, source, request)
    else:
        remote_policy.check_raw(request.model_dump(exclude_defaults=True), source)
    if submitter.startswith("discord:") and request.hub_model_id and \
            request.hub_model_id.split("/")[0] == remote_policy.namespace_for(submitter):  # tell Discord users apart
        tag = f"-d{submitter.partition(':')[2]}"
        if not request.hub_model_id.endswith(tag):
            request = request.model_copy(update={"hub_model_id": request.hub_model_id[:96 - len(tag)] + tag})
    remote_policy.check_request(request, submitter, source)
    return request
