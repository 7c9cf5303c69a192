"""Tool schemas for a chat with a tool-calling model: checked as a stranger's input, then put where the
model's chat template expects them.

A template that takes `tools` (Qwen, Llama 3.1, SmolLM3, ...) gets them as that variable. A template that
does not gets them as the system message, as JSON text: that is how the factory trains tool calling from
a dataset's tool column (`field_system: tools`, the glaive rows of `make demo-real`).
"""

from __future__ import annotations

import json

from factory.base.errors import UserError

MAX_BYTES = 16 * 1024
MAX_TOOLS = 32


def parse(text: str | None) -> list[dict] | None:
    """A JSON list of functions, each {"name", "description", "parameters"} or OpenAI's {"type": "function",
    "function": {...}}; None when the box is empty."""
    if not (text or "").strip():
        return None
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise UserError(f"tools: at most {MAX_BYTES // 1024} KiB of JSON")
    try:
        tools = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"tools: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list) or len(tools) > MAX_TOOLS:
        raise UserError(f"tools: give a JSON list of at most {MAX_TOOLS} function schemas")
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else tool
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise UserError(f'tools[{i}]: each tool is an object with a "name" (and "description", "parameters")')
        if not isinstance(function.get("parameters", {}), dict):
            raise UserError(f'tools[{i}] ({function["name"]}): "parameters" is a JSON schema object')
        out.append(function)
    return out


def placed(template: str | None, messages: list[dict], tools: list[dict] | None) -> tuple[list[dict], dict]:
    """The conversation and the template's extra variables, with the tools where this template reads them."""
    if not tools:
        return messages, {}
    if "tools" in (template or ""):
        return messages, {"tools": [{"type": "function", "function": t} for t in tools]}
    if messages and messages[0].get("role") == "system":
        raise UserError("this model's template takes no tools, so they go in the system message: give tools or a "
                        "system message, not both")
    return [{"role": "system", "content": json.dumps(tools)}, *messages], {}
