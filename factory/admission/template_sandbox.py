"""A chat template from a stranger is rendered once at the door, in a child process with a time, memory
and output-size limit, inside Jinja's immutable sandbox (the environment transformers renders with).

A template that loops forever, explodes its output or its memory, or fails on an ordinary conversation
is refused before it is queued. One that behaves on this conversation and not on others passes here; the
worker, the preview, chat and eval render it within the same limits (render_bounds), so it is stopped there.
"""

from __future__ import annotations

import json
import subprocess
import sys

from factory.base.errors import UserError
from factory.data.render_bounds import LIMIT_S, MEMORY

TIME_LIMIT_S = LIMIT_S  # the same limits as every render for a stranger (preview, chat, eval, the data stage)
MEMORY_LIMIT = MEMORY
MAX_OUTPUT = 64 * 1024
SAMPLE = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello?"},
          {"role": "assistant", "content": "Hi! How can I help?"}, {"role": "user", "content": "Name a colour."}]

_CHILD = r"""
import json, resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from jinja2.sandbox import ImmutableSandboxedEnvironment
job = json.loads(sys.stdin.read())
def raise_exception(message):
    raise ValueError(message)
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
env.globals["raise_exception"] = raise_exception
try:
    out = env.from_string(job["template"]).render(messages=job["messages"], add_generation_prompt=True,
                                                  bos_token="<s>", eos_token="</s>")
except MemoryError:
    print(json.dumps({"error": "it used more memory than allowed"})); sys.exit(0)
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {str(exc)[:200]}"})); sys.exit(0)
print(json.dumps({"length": len(out), "has_content": all(m["content"] in out for m in job["messages"])}))
"""


def check_template(template: str, source: str = "request") -> None:
    """Render template on a sample conversation within the limits, or raise a UserError saying why not."""
    job = json.dumps({"template": template, "messages": SAMPLE})
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _CHILD, str(MEMORY_LIMIT)], input=job, capture_output=True,
                              text=True, timeout=TIME_LIMIT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"{source}: chat-template-sandbox: the chat_template did not finish rendering a 4-message "
                        f"conversation within {TIME_LIMIT_S:g} s; refused") from None
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    try:
        result = json.loads(line)
    except json.JSONDecodeError:
        raise UserError(f"{source}: chat-template-sandbox: rendering the chat_template crashed its sandbox "
                        "(too much memory or output); refused") from None
    if "error" in result:
        raise UserError(f"{source}: chat-template-sandbox: the chat_template fails on an ordinary conversation "
                        f"({result['error']}); refused")
    if result["length"] > MAX_OUTPUT:
        raise UserError(f"{source}: chat-template-sandbox: the chat_template turns a 4-message conversation into "
                        f"{result['length']:,} characters (at most {MAX_OUTPUT:,}); refused")
    if not result["has_content"]:
        raise UserError(f"{source}: chat-template-sandbox: the chat_template drops message content; refused")
