"""Regular expressions from a request, matched within a time budget.

Python's `re` backtracks: `^([a-z_.0-9]+)*X` over a model's parameter names runs for hours. The
`regex` package takes a timeout; every pattern a request holds (unfrozen_parameters, a
lora_target_modules expression) is matched through here, all names within one budget.
"""

from __future__ import annotations

import time

import regex

from factory.base.errors import UserError

BUDGET_S = 5.0


def matching(patterns: list[str], names: list[str], *, full: bool, what: str, budget_s: float = BUDGET_S) -> list[str]:
    """The names that one of the patterns matches (fullmatch when full, else search), in order; a UserError
    when a pattern does not compile or the matching takes longer than budget_s in all."""
    try:
        compiled = [regex.compile(p) for p in patterns]
    except regex.error as exc:
        raise UserError(f"{what}: {exc}: not a regular expression") from None
    deadline = time.monotonic() + budget_s
    out = []
    try:
        for name in names:
            for c in compiled:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if (c.fullmatch if full else c.search)(name, timeout=left):
                    out.append(name)
                    break
    except TimeoutError:
        raise UserError(f"{what}: matching {len(patterns)} pattern(s) against {len(names):,} names took more than "
                        f"{budget_s:g} s (nested repetition such as (a+)* backtracks); simplify the pattern") from None
    return out
