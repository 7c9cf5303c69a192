"""The door every queued request passes, whichever front door it came through (and the Space's live check).

CLI (`factory submit`, the operator's): schema, grants for local files, eval tasks, lint.
Space and Discord (strangers): first who they are (hf:<user> / discord:<id>), plain small YAML
(yaml_guard), no key that reaches the worker's disk or Python, Hub ids only, their own namespace and
the operator's bounds (remote_policy); then everything the CLI passes.
"""

from __future__ import annotations

import re

from factory.request.config import Request, loads_request, parse_request
from factory.base.errors import UserError
from factory.base.redact import scrub_paths

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


def check_identity(identity: str, source: str) -> None:
    """A front door's identity (hf:<user>, discord:<id>), or a UserError."""
    if not any(form.match(identity or "") for form in SUBMITTER_FORMS.values()):
        raise UserError(f"{source}: '{identity}' is not a front door's identity (hf:<username> or discord:<user id>)")


def admit(request: Request | str, submitter: str, front_door: str, hub_token: str | None = None) -> Request:
    """The validated request as it will be queued, or a UserError naming the rule it breaks.

    A stranger's request is checked with the stranger's own eyes: every read it takes (the base model's
    config, the datasets' sizes) goes through their sign-in token (hub_token), or sees public repos only."""
    if front_door not in FRONT_DOORS:
        raise UserError(f"front_door must be one of {', '.join(FRONT_DOORS)}, not {front_door!r}")
    check_submitter(submitter, front_door)
    source = f"{front_door} request"
    hub = None
    if front_door != "cli":
        try:
            hub = reader_hub(submitter, hub_token)
            request = _stranger(request, submitter, source, hub)
            return _queued(request, source, hub)
        except UserError as exc:  # a stranger reads what is wrong, never where the factory keeps its files
            raise UserError(scrub_paths(str(exc))) from None
    if isinstance(request, str):
        request = loads_request(request, source)
    return _queued(request, source, hub)


def _queued(request: Request, source: str, hub) -> Request:
    """What every queued request passes, whoever sent it."""
    from factory.admission.checks import check_request
    from factory.admission.grants import check_queued

    if request.output_dir:
        raise UserError("output_dir cannot be set on a queued job: the worker keeps its run folder in "
                        "$FACTORY_HOME/runs/job-<id>-<token>; remove the key")
    check_queued(request, source)  # before anything reads a local file it names
    check_request(request, source, hub)
    return request


def readmit(request_yaml: str, submitter: str, front_door: str, source: str, hub=None) -> Request:
    """A queued request checked again where it runs (the row may predate a policy change): the grants for
    local files, and for a stranger's request the front-door policy, reading through `hub` (theirs)."""
    from factory.admission import remote_policy
    from factory.admission.grants import check_queued

    request = loads_request(request_yaml, source)
    check_queued(request, source)
    if front_door != "cli":
        remote_policy.check_request(request, submitter, source, hub=hub)
    return request


def reader_hub(submitter: str, hub_token: str | None = None):
    """The hub as this stranger sees it: their sign-in token, or public repos only (never the operator's)."""
    from factory.hub.credentials import Token, operator_endpoint
    from factory.hub.choose import hub_for

    token = Token(hub_token, "your sign-in", operator_endpoint()) if hub_token else None
    return hub_for(submitter, token)


def _stranger(request: Request | str, submitter: str, source: str, hub) -> Request:
    from factory.admission import remote_policy
    from factory.admission.yaml_guard import load_untrusted

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
    remote_policy.check_request(request, submitter, source, hub=hub)
    return request
