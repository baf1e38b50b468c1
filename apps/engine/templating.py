"""Templates inside workflow definitions: sandboxed Jinja2 over `{input, nodes}`.

Choices:
- `ImmutableSandboxedEnvironment`: a definition may be written by any builder and rendered with caller input,
  so no attribute tricks (`__class__`, `mro`...), no unsafe callables, and no mutation of the context
  (`input.update(...)`, `list.append`): one node's template cannot change what another node sees.
- `*` and `**` are checked before they run: a repetition longer than MAX_SEQUENCE items/characters or a power
  with more than MAX_POWER_BITS bits is a template error, not seconds of CPU and gigabytes of memory.
  Any other exception while rendering (division by zero, `'a' + 1`, overflow, the sandbox's range cap) is
  a template error too, not an internal one.
- Autoescape off: the output goes to JSON bodies, URLs and prompts, not HTML.
- `StrictUndefined`: a missing variable (`{{ input.questoin }}`) is a node error naming it, instead of a
  silently empty string sent upstream. Optional input fields are present as None (see the input node), so
  `{% if input.x %}` and `{{ input.x or "" }}` work for them.
- A string that is exactly one `{{ expression }}` yields the value itself (object, list, number, None).
- Compiled templates and expressions are cached by source: definitions are immutable versions, so the same
  few sources come back run after run.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.exceptions import TemplateRuntimeError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

__all__ = ["TemplateError", "render", "render_string", "env"]

MAX_SEQUENCE = 100_000  # items of a list, characters of a string, made by `*`
MAX_POWER_BITS = 100_000  # bits of an integer made by `**` (about 30,000 digits)


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                size = _length(sequence)
                if size is not None and isinstance(count, int) and size * count > MAX_SEQUENCE:
                    raise SecurityError(f"The result of * would be longer than {MAX_SEQUENCE} items")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
                    and right * (abs(left).bit_length() - 1) > MAX_POWER_BITS):
                raise SecurityError(f"The result of ** would be larger than {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


env = _Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)

# Exactly one expression, with nothing else around it (no second `{{`, no `{%`/`{#` inside).
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}|\{%|\{#).)+)\}\}\s*$", re.DOTALL)


@lru_cache(maxsize=2048)
def _template(source: str):
    return env.from_string(source)


@lru_cache(maxsize=2048)
def _expression(source: str):
    return env.compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _single_expression(source: str) -> str | None:
    match = _SINGLE_EXPRESSION.match(source)
    if not match:
        return None
    expr = match.group("expr")
    # Whitespace control (`{{- x -}}`) is a marker glued to the braces, not part of the expression.
    if expr[:1] in "-+":
        expr = expr[1:]
    if expr[-1:] in "-+":
        expr = expr[:-1]
    return expr.strip() or None


def render_string(source: str, context: dict[str, Any]) -> Any:
    if "{" not in source:  # fast path: most strings in a config are literals
        return source
    try:
        return _render_string(source, context)
    except TemplateError:
        raise
    except Exception as exc:  # 1/0, 'a' + 1, float overflow, the sandbox's range() cap: the template's fault
        raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from exc


def _render_string(source: str, context: dict[str, Any]) -> Any:
    expr = _single_expression(source)
    if expr is not None:
        value = _expression(expr)(**context)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()  # raises UndefinedError naming the missing variable
        return value
    if "{{" not in source and "{%" not in source and "{#" not in source:
        return source
    return _template(source).render(context)


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render strings; walk dicts and lists. Keys are not rendered. Raises jinja2.TemplateError."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context) for item in value]
    return value
