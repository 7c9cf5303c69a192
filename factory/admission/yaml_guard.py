"""YAML from strangers: small, flat enough, and plain data before anything builds objects from it.

The document is read as a stream of parser events first (bounded by its size), so a "billion laughs"
document is refused before a single alias is expanded: anchors, aliases and tags other than the
standard scalar ones are refused outright, and nesting is bounded.
"""

from __future__ import annotations

import yaml

from factory.base.errors import UserError

MAX_BYTES = 64 * 1024
MAX_DEPTH = 12
STANDARD_TAGS = {None, "!", "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                 "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def load_untrusted(text: str | bytes, source: str = "request") -> object:
    """The YAML document as plain data, or a UserError naming the rule it breaks."""
    if isinstance(text, bytes):
        if len(text) > MAX_BYTES:
            raise UserError(f"{source}: yaml-size: the request is {len(text):,} bytes; at most {MAX_BYTES:,} are accepted")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UserError(f"{source}: yaml-encoding: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise UserError(f"{source}: yaml-size: the request is {size:,} bytes; at most {MAX_BYTES:,} are accepted")
    if "\0" in text:
        raise UserError(f"{source}: yaml-nul: the request holds a NUL byte")
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise UserError(f"{source}: yaml-alias: anchors and aliases (&name, *name) are not accepted in "
                                "requests from front doors; write the values out")
            tag = getattr(event, "tag", None)
            if tag not in STANDARD_TAGS:
                raise UserError(f"{source}: yaml-tag: the tag {tag!r} is not accepted; plain YAML values only")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise UserError(f"{source}: yaml-depth: nested deeper than {MAX_DEPTH} levels")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise UserError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
