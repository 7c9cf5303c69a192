"""The command line: one module per command group (main holds the parser and the entry point).

Top floor: may import every floor below (frontdoor, queue, run, admission, train, publish, data, request, demo,
hub, base) and evals. Nothing in factory imports it.
"""
