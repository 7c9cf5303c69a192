"""Does a chat template only write a message's content out, never look at it? Read from its syntax tree.

When it does only that (ChatML and its like), rendering a conversation with each assistant reply
replaced by a marker, then putting the replies back where the markers are, gives exactly the render:
what the template does cannot depend on a value it never reads. encode.py then renders each
conversation once instead of twice. The check is conservative: anything it does not recognise
(a filter or test on content, content assigned to a variable, a whole message handed to a filter,
`loop.previtem`, ...) answers False, and the two renders stay.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=32)
def content_only_written(template: str) -> bool:
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    try:
        tree = ImmutableSandboxedEnvironment().parse(template)
    except Exception:  # noqa: BLE001 - not for us to judge: the render reports it
        return False
    if any(True for _ in tree.find_all((nodes.FilterBlock, nodes.Macro, nodes.CallBlock, nodes.AssignBlock,
                                         nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport))):
        return False  # output captured and transformed, or a template we cannot see
    parents: dict[int, nodes.Node] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in node.iter_child_nodes():
            parents[id(child)] = node
            stack.append(child)

    def parent(node):
        return parents.get(id(node))

    loop_vars = set()  # names bound to one message: `for m in messages` (or a slice of it)
    for loop in tree.find_all(nodes.For):
        it = loop.iter
        if isinstance(it, nodes.Getitem) and isinstance(it.arg, nodes.Slice):
            it = it.node
        if isinstance(it, nodes.Name) and it.name == "messages":
            if not isinstance(loop.target, nodes.Name):
                return False
            loop_vars.add(loop.target.name)
    assigned = {t.name for a in tree.find_all((nodes.Assign, nodes.AssignBlock)) for t in a.find_all(nodes.Name)}
    if loop_vars & assigned or "messages" in assigned:
        return False

    def written(node) -> bool:  # only joined with + or ~ on the way up to an {{ output }}
        up = parent(node)
        while isinstance(up, (nodes.Add, nodes.Concat)):
            up = parent(up)
        return isinstance(up, nodes.Output)

    def one_message(node) -> bool:  # m, or messages[i]
        if isinstance(node, nodes.Name):
            return node.name in loop_vars
        return (isinstance(node, nodes.Getitem) and isinstance(node.node, nodes.Name) and node.node.name == "messages"
                and not isinstance(node.arg, nodes.Slice))

    for name in tree.find_all(nodes.Name):
        if name.ctx != "load":
            continue
        if name.name == "loop" and isinstance(parent(name), nodes.Getattr) and parent(name).attr in ("previtem", "nextitem"):
            return False
        if name.name == "messages":
            up = parent(name)
            if isinstance(up, nodes.For) and up.iter is name:
                continue
            if isinstance(up, nodes.Filter) and up.name == "length":
                continue
            if isinstance(up, nodes.Getitem) and up.node is name:
                if isinstance(up.arg, nodes.Slice) and isinstance(parent(up), nodes.For):
                    continue
                if not isinstance(up.arg, nodes.Slice):
                    name = up  # messages[i]: one message, judged below
            if not one_message(name):
                return False
        elif name.name not in loop_vars:
            continue
        use = parent(name)
        key = (use.attr if isinstance(use, nodes.Getattr) and use.node is name else
               use.arg.value if isinstance(use, nodes.Getitem) and use.node is name and isinstance(use.arg, nodes.Const)
               else None)
        if key == "role":
            continue
        if key == "content" and written(use):
            continue
        return False
    for const in tree.find_all(nodes.Const):  # `m.get('content')`, `map(attribute='content')`, ...
        if const.value == "content":
            use = parent(const)
            if not (isinstance(use, nodes.Getitem) and use.arg is const and one_message(use.node) and written(use)):
                return False
    return True
