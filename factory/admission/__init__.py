"""Every check a request passes before it becomes a job: YAML guard, schema and lint checks, the remote
policy and its allow-list, grants for local files, the template sandbox; `admit` is the one function that admits.

May import train, publish and every floor below them; never run, queue, frontdoor or cli.
"""
