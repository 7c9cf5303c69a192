"""The pipeline, the one place that knows the stage order (resolve, data, train, merge, eval, card,
publish); `factory prepare`'s report; the JSON event lines a remote run prints.

May import admission and every floor below it; never queue, frontdoor or cli, and never the demo's assets
(import-linter forbids run -> demo).
"""
