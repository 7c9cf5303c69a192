"""An Ollama Modelfile for an exported GGUF: the file, the chat template as a Go template, the stop tokens.

Ollama templates are Go templates, not Jinja. A role-by-role template (ChatML, Llama 3, Zephyr, the
factory's own) is read off the Jinja one by rendering a few conversations with marker contents and
cutting the text at the markers; the Go template is written only if, filled the same way, it gives
exactly the Jinja rendering of a longer conversation. Otherwise the Modelfile leaves TEMPLATE out
and Ollama falls back to the template inside the GGUF.
"""

from __future__ import annotations

from dataclasses import dataclass

MARK = "\u2063{}\u2063"  # invisible separators around each marker: no template adds them


@dataclass(frozen=True)
class RoleTemplate:
    head: str  # once, before the first message (a BOS text, ...)
    wrap: dict[str, tuple[str, str]]  # role -> (before content, after content)
    generation: str  # after the last message, for the model to answer

    def render(self, messages: list[dict]) -> str:
        parts = [self.head]
        for m in messages:
            before, after = self.wrap[m["role"]]
            parts += [before, m["content"], after]
        return "".join(parts) + self.generation

    def go_template(self) -> str:
        body = "".join(f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{before}{{{{ .Content }}}}{after}'
                       for i, (role, (before, after)) in enumerate(self.wrap.items()))
        return f"{self.head}{{{{ range .Messages }}}}{body}{{{{ end }}}}{{{{ end }}}}{self.generation}"


def role_template(render) -> RoleTemplate | None:
    """render(messages, add_generation_prompt) -> text, for the model's Jinja template; None when not role-by-role."""
    try:
        return _derive(render)
    except Exception:  # a template that refuses these conversations (strict alternation, no system, ...)
        return None


def _derive(render) -> RoleTemplate | None:
    a, b, c, s = (MARK.format(x) for x in ("A", "B", "C", "S"))
    one = render([{"role": "user", "content": a}], False)
    head_up, _, user_after = one.partition(a)  # head + user-before, user-after
    gen = render([{"role": "user", "content": a}], True)
    if not gen.startswith(one):
        return None
    generation = gen[len(one):]
    two = render([{"role": "user", "content": a}, {"role": "assistant", "content": b}], False)
    between, _, asst_after = two.partition(a)[2].partition(b)
    if not between.startswith(user_after):
        return None
    asst_before = between[len(user_after):]
    three = render([{"role": "user", "content": a}, {"role": "assistant", "content": b},
                    {"role": "user", "content": c}], False)
    after_b = three.partition(b)[2].partition(c)[0]
    if not after_b.startswith(asst_after):
        return None
    user_before = after_b[len(asst_after):]
    if not head_up.endswith(user_before):
        return None
    head = head_up[: len(head_up) - len(user_before)]
    sys = render([{"role": "system", "content": s}, {"role": "user", "content": a}], False)
    pre_s, _, rest = sys.partition(s)
    sys_between = rest.partition(a)[0]
    if not pre_s.startswith(head) or not sys_between.endswith(user_before):
        return None
    wrap = {"system": (pre_s[len(head):], sys_between[: len(sys_between) - len(user_before)]),
            "user": (user_before, user_after), "assistant": (asst_before, asst_after)}
    t = RoleTemplate(head, wrap, generation)
    check = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
             {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    if t.render(check) != render(check, True) or any("{{" in x or '"""' in x for x in (head, generation, *sum(wrap.values(), ()))):
        return None
    return t


def modelfile(gguf_file: str, template: RoleTemplate | None, stops: list[str]) -> str:
    lines = [f"# Ollama: ollama create <name> -f Modelfile (in the folder holding {gguf_file}), then ollama run <name>",
             f"FROM ./{gguf_file}"]
    if template is not None:
        lines.append(f'TEMPLATE """{template.go_template()}"""')
    else:
        lines.append("# no TEMPLATE: this chat template is not role-by-role; Ollama reads the one inside the GGUF")
    lines += [f'PARAMETER stop "{s}"' for s in stops if s and '"' not in s and "\n" not in s]
    return "\n".join(lines) + "\n"


def stop_tokens(template: RoleTemplate | None, eos: str | None) -> list[str]:
    """The EOS token and the text that ends an assistant turn (its first line), each once."""
    stops = []
    if template is not None:
        end = template.wrap["assistant"][1].strip()
        if end:
            stops.append(end.splitlines()[0])
    if eos and eos not in stops:
        stops.append(eos)
    return stops
