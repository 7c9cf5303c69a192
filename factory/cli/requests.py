"""`factory validate` and `factory lint`: a request checked (schema, lint, cost) before any compute. No torch."""

from __future__ import annotations

import sys

from factory.base.errors import UserError


def _check(path: str, out=None, hub=None, require_base: bool = True):
    """Load, validate and lint a request; print warnings; raise UserError on any error."""
    from factory.admission.checks import check_request
    from factory.request.config import load_request

    request = load_request(path)
    for line in request.compat.summary():  # Axolotl keys that are not request fields: nothing dropped silently
        print(f"  axolotl {line}", file=out or sys.stdout)
    for f in check_request(request, path, hub, require_base=require_base):
        print(f"  {f.severity:7} {f.rule}: {f.message}", file=out or sys.stdout)
    return request


def cmd_validate(args) -> int:
    if args.keys:
        from factory.request.config import accepted_keys

        print(accepted_keys())
        return 0
    if not args.request:
        raise UserError("give a request file: factory validate REQUEST.yaml")
    request = _check(args.request, require_base=not args.offline)
    _print_costs(request, args.flavor)
    print(f"{args.request}: valid")
    return 0


def _print_costs(request, flavors: list[str] | None) -> None:
    """The estimated time and cost on Hugging Face Jobs: on --flavor, or where the request or backend runs it."""
    from factory.queue.compute import estimate_request
    from factory.queue.hf_jobs import backend
    from factory.hub.choose import default_hub

    if not flavors and (backend() == "hf-jobs" or request.compute.flavor):
        flavors = [None]  # the request's flavor, else the operator's default
    for flavor in flavors or []:
        try:
            print(f"  cost    hf-jobs {estimate_request(request, default_hub(request.hub_endpoint), flavor).line()}")
        except UserError as exc:
            print(f"  cost    hf-jobs {flavor or ''}: not estimated: {exc}")


def cmd_lint(args) -> int:
    from factory.admission.lint import RULES

    for rule in RULES:
        print(f"{rule.id} [{rule.severity}]\n    {rule.reason}")
    return 0


def add_commands(sub) -> None:
    v = sub.add_parser("validate", help="check a request: schema errors (with file:line) and lint findings; exit 0 or 2")
    v.add_argument("request", nargs="?", help="the request YAML")
    v.add_argument("--keys", action="store_true", help="print every accepted key with its type and default")
    v.add_argument("--offline", action="store_true", help="check without the base model (not downloaded, not in the "
                   "local hub): a warning instead of an error, and the lint rules that need its config are skipped")
    v.add_argument("--flavor", action="append", metavar="FLAVOR", help="estimate the run's time and cost on this "
                   "Hugging Face Jobs flavor (repeatable; prices from the Hub, or FACTORY_JOBS_PRICES)")
    v.set_defaults(fn=cmd_validate)
    lt = sub.add_parser("lint", help="the lint rules")
    lt.add_argument("--list", action="store_true", required=True, help="print each rule with the reason it exists")
    lt.set_defaults(fn=cmd_lint)
