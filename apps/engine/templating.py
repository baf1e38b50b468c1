"""Templates inside workflow definitions: sandboxed Jinja2 over `{input, nodes}`.

Choices:
- `ImmutableSandboxedEnvironment`: a definition may be written by any builder and rendered with caller input,
  so no attribute tricks (`__class__`, `mro`...), no unsafe callables, and no mutation of the context
  (`input.update(...)`, `list.append`): one node's template cannot change what another node sees.
- Every render has a budget (TemplateLimits, SPEC section 12): output length, widths/paddings/repeat counts,
  loop steps and wall-clock time. Over budget raises TemplateLimitError (node error `template_limit`, naming
  the limit). Sizes are computed from the arguments BEFORE anything is allocated; see "The budget" below.
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

import contextlib
import contextvars
import inspect
import json
import re
import time
import types
from collections.abc import Iterator, Mapping
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined, nodes, pass_context, pass_eval_context
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.exceptions import TemplateRuntimeError
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter, SecurityError
from jinja2.utils import generate_lorem_ipsum
from markupsafe import EscapeFormatter, Markup

from .errors import TemplateLimitError
from .types import TemplateLimits

__all__ = ["TemplateError", "TemplateLimitError", "TemplateLimits", "env", "render", "render_string", "use_limits"]

MAX_POWER_BITS = 100_000  # bits of an integer made by `**` (about 30,000 digits)


# --- The budget ---------------------------------------------------------------------------------------
#
# One _Budget per top-level render() call, held in a contextvar (branches render concurrently on a thread
# pool; each thread sees only its own). The invariant it keeps: no string or sequence the template builds is
# larger than the limits, and the check happens BEFORE the allocation, from the arguments:
# - widths, paddings, precisions, repeat counts, fill counts, indents (`format`, `%`, `center`, `indent`,
#   `ljust/rjust/zfill/expandtabs`, `tojson(indent)`, `batch`, `slice`, `*`...) are at most `max_width`,
#   and a sequence built by `*`, `|list`, `join`, `split`... has at most `max_width` items;
# - any string built (format, `%`, `~`, `+`, replace, join, a filter, an output chunk) is at most
#   `max_output_chars` characters, computed from the argument sizes (container reprs are sized by walking
#   them, so `{{ [big] * 100000 }}` is refused before str() runs);
# - every such string is also charged to `max_built_chars`, so loops cannot keep many of them alive;
# - every iteration of every `{% for %}` (nested, recursive, filtered) and every macro call is a step
#   (`max_loop_steps`); the wall clock (`max_render_seconds`) is checked at each step, charge and output chunk.
# Operations whose result is a bounded multiple of an input already under the limits (`upper`, `escape`,
# `urlencode`...) are measured right after they run: at most a few MB exist before the refusal.


DEFAULT_LIMITS = TemplateLimits()
_LIMITS: contextvars.ContextVar[TemplateLimits] = contextvars.ContextVar("template_limits", default=DEFAULT_LIMITS)
_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)


@contextlib.contextmanager
def use_limits(limits: TemplateLimits | None) -> Iterator[None]:
    """Renders inside this block (on this thread) use `limits` (the executor wraps each node in one)."""
    token = _LIMITS.set(limits or DEFAULT_LIMITS)
    try:
        yield
    finally:
        _LIMITS.reset(token)


class _Budget:
    __slots__ = ("limits", "deadline", "steps", "built")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_render_seconds
        self.steps = 0
        self.built = 0

    def clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(
                "render_seconds", f"The template ran longer than its {self.limits.max_render_seconds} s render budget"
            )

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_loop_steps:
            raise TemplateLimitError(
                "loop_steps", f"The template took more than {self.limits.max_loop_steps} loop steps or macro calls"
            )
        self.clock()

    def fit(self, size: int, what: str) -> None:
        if size > self.limits.max_output_chars:
            raise TemplateLimitError(
                "output_chars",
                f"{what} would be {size} characters long, over the {self.limits.max_output_chars} limit",
            )

    def width(self, value: Any, what: str) -> None:
        if isinstance(value, int) and abs(value) > self.limits.max_width:
            raise TemplateLimitError("width", f"{what} {value} is over the {self.limits.max_width} limit")

    def items(self, count: int, what: str) -> None:
        if count > self.limits.max_width:
            raise TemplateLimitError(
                "width", f"{what} would have {count} items, over the {self.limits.max_width} limit"
            )

    def charge(self, size: int) -> None:
        self.built += size
        if self.built > self.limits.max_built_chars:
            raise TemplateLimitError(
                "built_chars",
                f"The template built more than {self.limits.max_built_chars} characters in one render",
            )
        self.clock()

    def text(self, value: Any, what: str) -> None:
        """Refuse before str(value) if that string would be over the output limit."""
        if not isinstance(value, (int, float, bool, type(None))):
            self.fit(_text_size(value, self.limits.max_output_chars), what)

    def made(self, value: Any) -> Any:
        """Measure a result that exists (a bounded multiple of checked inputs) and charge it."""
        if isinstance(value, str):
            self.fit(len(value), "A string")
            self.charge(len(value))
        elif isinstance(value, (list, tuple)):
            self.items(len(value), "A sequence")
            self.charge(len(value))
        return value


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # the env used outside render(): still bounded, one budget per call
        budget = _Budget(_LIMITS.get())
    return budget


def _text_size(value: Any, limit: int) -> int:
    """About len(str(value)) without building it (a string's own length; a container's repr, walked
    iteratively and abandoned once past `limit`). Escapes may make the real repr a few times longer."""
    if isinstance(value, str):
        return len(value)
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 4
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            total += 24
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            if total <= limit:
                for key, val in item.items():
                    stack.append(key)
                    stack.append(val)
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item)
        else:
            total += 64
        if total > limit:
            return total
    return total


class _Counted:
    """An iterable that counts one step per item (every `for` loop iterates through one)."""

    __slots__ = ("_iterable", "_budget")

    def __init__(self, iterable: Any, budget: _Budget) -> None:
        self._iterable = iterable
        self._budget = budget

    def __iter__(self) -> Iterator[Any]:
        step = self._budget.step
        for item in self._iterable:
            step()
            yield item

    def __len__(self) -> int:  # LoopContext asks for `loop.length`; a generator has none (TypeError)
        return len(self._iterable)


def _limited(iterable: Any, budget: _Budget, what: str) -> list[Any]:
    """list(iterable), refusing once it passes max_width items (before building the rest)."""
    if isinstance(iterable, (str, list, tuple, dict, set, frozenset, range)):
        budget.items(len(iterable), what)
        return list(iterable)
    out: list[Any] = []
    cap = budget.limits.max_width
    for item in iterable:
        out.append(item)
        if len(out) > cap:
            budget.items(len(out), what)
    return out


def _small_int(text: str) -> int:
    return int(text) if len(text) <= 12 else 10**12  # never int() a 5,000-digit width


# --- Checks for widths and sizes, computed before the operation runs ------------------------------------

_DIGITS = re.compile(r"\d+")


def _check_printf(budget: _Budget, fmt: Any, values: Any) -> None:
    """`fmt % values`: each width/precision under max_width; the result's size under max_output_chars."""
    if not isinstance(fmt, str):
        return
    limit = budget.limits.max_output_chars
    budget.text(fmt, "The % format")
    positional = values if isinstance(values, tuple) else (values,)
    mapping = values if isinstance(values, Mapping) else None
    total, position, index, n = len(fmt), 0, 0, len(fmt)
    while True:
        index = fmt.find("%", index)
        if index < 0 or index + 1 >= n:
            return
        index += 1
        key = None
        if fmt[index] == "(":
            depth, end = 1, index + 1
            while end < n and depth:
                depth += (fmt[end] == "(") - (fmt[end] == ")")
                end += 1
            key, index = fmt[index + 1:end - 1], end
        while index < n and fmt[index] in "-+ #0":
            index += 1
        sizes = []
        for _ in range(2):  # width, then .precision
            if index < n and fmt[index] == "*":
                star = positional[position] if position < len(positional) else 0
                position += 1
                sizes.append(star if isinstance(star, int) else 0)
                index += 1
            else:
                match = _DIGITS.match(fmt, index)
                sizes.append(_small_int(match.group()) if match else 0)
                index = match.end() if match else index
            if len(sizes) == 1:
                if index < n and fmt[index] == ".":
                    index += 1
                else:
                    sizes.append(0)
                    break
        width, precision = sizes
        budget.width(width, "A % format width")
        budget.width(precision, "A % format precision")
        while index < n and fmt[index] in "hlL":
            index += 1
        if index >= n:
            return
        conversion = fmt[index]
        index += 1
        if conversion == "%":
            continue
        if key is not None and mapping is not None:
            value = mapping.get(key) if hasattr(mapping, "get") else None
        else:
            value = positional[position] if position < len(positional) else None
            position += 1
        natural = _text_size(value, limit) + (0 if conversion in "sra" else precision + 8)
        total += max(abs(width), natural)
        budget.fit(total, "The result of %")


def _check_format_spec(budget: _Budget, spec: str) -> int:
    """Numbers in a format spec (`>600000000`, `.999f`, `{:%Y}` has none) are widths/precisions."""
    widest = 0
    for match in _DIGITS.finditer(spec):
        number = _small_int(match.group())
        budget.width(number, "A format width")
        widest += number
    return widest


class _Formatter(SandboxedFormatter):
    """str.format / format_map: each field is sized before it is formatted, and the running total too."""

    _total = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        budget = _budget()
        budget.text(format_string, "The format string")
        self._total = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            _budget().text(value, "A format field")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        budget = _budget()
        limit = budget.limits.max_output_chars
        estimate = _check_format_spec(budget, format_spec) + _text_size(value, limit)
        budget.fit(self._total + estimate, "The result of format")
        result = super().format_field(value, format_spec)
        self._total += len(result)
        budget.fit(self._total, "The result of format")
        return result


class _EscapeFormatter(_Formatter, EscapeFormatter):
    pass


def _pieces(s: str, separators: str) -> int:
    """An upper bound of how many pieces splitting `s` on any of `separators` makes (no list is built)."""
    return sum(s.count(c) for c in separators) + 1


_WHITESPACE = " \t\n\r\f\v\x1c\x1d\x1e\x1f\x85\u2028\u2029\xa0"


def _check_str_method(budget: _Budget, s: str, name: str, args: tuple, kwargs: dict) -> None:
    def arg(i: int, key: str, default: Any) -> Any:
        return args[i] if len(args) > i else kwargs.get(key, default)

    budget.text(s, "The string")
    if name in ("center", "ljust", "rjust", "zfill"):
        budget.width(arg(0, "width", 0), f"The {name} width")
    elif name == "expandtabs":
        tabsize = arg(0, "tabsize", 8)
        budget.width(tabsize, "The expandtabs tab size")
        if isinstance(tabsize, int):
            budget.fit(len(s) + s.count("\t") * max(tabsize, 0), "The result of expandtabs")
    elif name == "replace":
        old, new, count = arg(0, "old", ""), arg(1, "new", ""), arg(2, "count", -1)
        if isinstance(old, str) and isinstance(new, str):
            budget.text(new, "The replacement")
            times = s.count(old) if old else len(s) + 1
            if isinstance(count, int) and count >= 0:
                times = min(times, count)
            budget.fit(len(s) + times * (len(new) - len(old)), "The result of replace")
    elif name == "translate":
        table = arg(0, "table", None)
        if isinstance(table, Mapping):
            longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
            budget.fit(len(s) * max(longest, 1), "The result of translate")
    elif name in ("split", "rsplit"):
        sep, maxsplit = arg(0, "sep", None), arg(1, "maxsplit", -1)
        pieces = _pieces(s, _WHITESPACE) if sep is None else (s.count(sep) + 1 if isinstance(sep, str) and sep else 1)
        if isinstance(maxsplit, int) and maxsplit >= 0:
            pieces = min(pieces, maxsplit + 1)
        budget.items(pieces, f"The result of {name}")
    elif name == "splitlines":
        budget.items(_pieces(s, "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"), "The result of splitlines")


def _str_join(budget: _Budget, separator: str, iterable: Any) -> str:
    items = _limited(iterable, budget, "The joined sequence")
    size = len(separator) * max(len(items) - 1, 0) + sum(len(i) for i in items if isinstance(i, str))
    budget.fit(size, "The result of join")
    return separator.join(items)


# --- Filters: guarded replacements and a generic size check around every filter ---------------------------

# Filters that turn their first argument into a string: refuse before str() of a huge container/input.
_TEXT_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "pprint", "replace",
    "safe", "string", "striptags", "title", "trim", "truncate", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap", "xmlattr",
})
# Filters that split their text into words: a list of up to max_width pieces.
_WORD_FILTERS = frozenset({"striptags", "title", "wordcount", "wordwrap", "urlize"})
# Filters that materialise their first argument as a list.
_LIST_FILTERS = frozenset({"list", "sort", "unique", "reverse", "dictsort", "groupby", "batch", "slice", "sum"})


def _pre_filter(budget: _Budget, name: str, a: dict[str, Any]) -> None:
    if name == "center":
        budget.width(a.get("width"), "The center width")
    elif name == "indent":
        width, s = a.get("width"), a.get("s")
        size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        budget.width(size, "The indent width")
        if isinstance(s, str):
            budget.fit(len(s) + (s.count("\n") + 1) * max(size, 0), "The result of indent")
    elif name == "replace":
        s, old, new, count = a.get("s"), a.get("old"), a.get("new"), a.get("count")
        if isinstance(s, str):
            _check_str_method(budget, s, "replace", (str(old), str(new), count if count is not None else -1), {})
    elif name == "format":
        args, kwargs = a.get("args") or (), a.get("kwargs") or {}
        _check_printf(budget, a.get("value"), kwargs or tuple(args))
    elif name == "wordwrap":
        s, wrapstring = a.get("s"), a.get("wrapstring")
        if isinstance(wrapstring, str) and isinstance(s, str):
            budget.width(len(wrapstring), "The wordwrap wrapstring length")
            budget.fit(len(s) + (len(s) + 1) * len(wrapstring), "The result of wordwrap")
    elif name == "urlize":
        value = a.get("value")
        extra = sum(len(str(a.get(k) or "")) for k in ("target", "rel", "extra_schemes"))
        if isinstance(value, str):
            budget.fit(3 * len(value) + (len(value) // 4 + 1) * (64 + extra), "The result of urlize")
    elif name == "batch":
        budget.width(a.get("linecount"), "The batch size")
    elif name == "slice":
        budget.width(a.get("slices"), "The slice count")
    elif name == "round":
        budget.width(a.get("precision"), "The round precision")
    elif name == "truncate":
        budget.width(a.get("length"), "The truncate length")


def _first_arg(a: dict[str, Any]) -> Any:
    for key in ("value", "s", "seq", "iterable", "d"):
        if key in a:
            return a[key]
    return None


def _guard_filter(name: str, func: Any) -> Any:
    signature = inspect.signature(func)
    if getattr(func, "jinja_pass_arg", None) is not None and getattr(inspect.unwrap(func), "jinja_pass_arg", None) is None:
        # jinja's async_variant wrappers take an eval context their sync function does not declare
        extra = inspect.Parameter("_jinja_pass_arg", inspect.Parameter.POSITIONAL_ONLY)
        signature = signature.replace(parameters=[extra, *signature.parameters.values()])
    pre = name in _TEXT_FILTERS or name in _LIST_FILTERS or name in {"batch", "slice", "round", "truncate"}

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        if pre:
            bound = signature.bind(*args, **kwargs)
            a = bound.arguments
            first = _first_arg(a)
            if name in _TEXT_FILTERS:
                budget.text(first, f"The input of |{name}")
                if name in _WORD_FILTERS and isinstance(first, str):
                    budget.items(_pieces(first, _WHITESPACE + "-([{<"), f"The words of |{name}")
            if name in _LIST_FILTERS and first is not None and not isinstance(first, Undefined):
                key = next(k for k in ("value", "s", "seq", "iterable", "d") if k in a)
                a[key] = _limited(first, budget, f"The input of |{name}")
                if name == "sum" and isinstance(a.get("start"), (list, tuple)):
                    budget.items(len(a["start"]) + sum(len(x) for x in a[key] if isinstance(x, (list, tuple))),
                                 "The result of |sum")
            _pre_filter(budget, name, a)
            args, kwargs = bound.args, bound.kwargs
        return budget.made(func(*args, **kwargs))

    return guarded


@pass_eval_context
def _join_filter(eval_ctx: Any, value: Any, d: str = "", attribute: str | int | None = None) -> str:
    budget = _budget()
    items = _limited(value, budget, "The joined sequence")
    if attribute is not None:
        getter = eval_ctx.environment.getattr
        items = [getter(item, attribute) for item in items]
    total = len(str(d)) * max(len(items) - 1, 0)
    for item in items:  # size every item before str() of any of them (`[big] * 100000 | join`)
        total += _text_size(item, budget.limits.max_output_chars)
        budget.fit(total, "The result of join")
    return budget.made(_ORIGINAL_FILTERS["join"](eval_ctx, items, d))


_JSON_HTML_SAFE = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027"))


@pass_eval_context
def _tojson_filter(eval_ctx: Any, value: Any, indent: int | str | None = None) -> Markup:
    """`tojson`, sized: the indent is a width; depth x indent and every chunk count toward the output limit."""
    budget = _budget()
    limit = budget.limits.max_output_chars
    if indent is not None:
        size = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
        budget.width(size, "The tojson indent")
        budget.fit(_depth(value) * max(size, 0), "One line of tojson's output")
    estimate = _text_size(value, limit)
    kwargs = dict(eval_ctx.environment.policies["json.dumps_kwargs"])
    if indent is None and estimate * 12 <= limit:  # fast path: the C encoder, cannot go over
        text = json.dumps(value, **kwargs)
    else:
        budget.fit(estimate, "The tojson input")
        parts, total = [], 0
        for chunk in json.JSONEncoder(indent=indent, **kwargs).iterencode(value):
            total += len(chunk)
            budget.fit(total, "The result of tojson")
            parts.append(chunk)
        text = "".join(parts)
    for char, escaped in _JSON_HTML_SAFE:
        text = text.replace(char, escaped)
    return Markup(budget.made(text))  # noqa: S704 (escaped for HTML above, as jinja's own tojson does)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in item)
    return deepest


@pass_context
def _count_loop(context: Any, iterable: Any) -> Any:
    """Inserted around every `{% for %}` iterable at parse time: one loop step per item."""
    return _Counted(iterable, _budget())


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    budget = _budget()
    budget.width(n, "The lipsum paragraph count")
    budget.width(max, "The lipsum word count")
    budget.fit(abs(n) * abs(max) * 12, "The result of lipsum")
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


# --- The environment and its code generator ---------------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    """Every output chunk (expressions and literal text, also inside macros and `{% set %}` blocks) and
    every `~` concatenation goes through the budget; the sizes are checked before str() runs."""

    def _output_child_pre(self, node: nodes.Expr, frame: Any, finalize: Any) -> None:
        if frame.eval_ctx.volatile:
            self.write("environment.budget_out((escape if context.eval_ctx.autoescape else str), ")
        elif frame.eval_ctx.autoescape:
            self.write("environment.budget_out(escape, ")
        else:
            self.write("environment.budget_out(str, ")
        if finalize.src is not None:
            self.write(finalize.src)

    def _output_const_repr(self, group: Any) -> str:
        return f"environment.budget_text({super()._output_const_repr(group)})"

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"environment.budget_concat({func_name}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _CodeGenerator

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):  # every loop iterates through a step counter
            loop.iter = nodes.Filter(loop.iter, "_count_loop", [], [], None, None, lineno=loop.lineno)
        return tree

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        budget = _budget()
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                size = _length(sequence)
                if size is not None and isinstance(count, int):
                    budget.items(size * count, "The result of *")
                    budget.charge(size * count)
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
                    and right * (abs(left).bit_length() - 1) > MAX_POWER_BITS):
                raise TemplateLimitError("width", f"The result of ** would be larger than {MAX_POWER_BITS} bits")
        elif operator == "+":
            if _length(left) is not None and _length(right) is not None:
                budget.fit(len(left) + len(right), "The result of +")
                budget.charge(len(left) + len(right))
        elif operator == "%":
            _check_printf(budget, left, right)
            return budget.made(super().call_binop(context, operator, left, right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's convention)
        budget = _budget()
        if isinstance(__obj, Macro):
            budget.step()  # a macro call is a step: recursion that fans out ends here
        elif isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (_Counted(args[0], budget), *args[1:])
        elif isinstance(__obj, types.BuiltinMethodType) and isinstance(getattr(__obj, "__self__", None), str):
            if not __self.is_safe_callable(__obj):
                raise SecurityError(f"{__obj!r} is not safely callable")
            if __obj.__name__ == "join" and len(args) == 1 and not kwargs:
                return budget.made(_str_join(budget, __obj.__self__, args[0]))
            _check_str_method(budget, __obj.__self__, __obj.__name__, args, kwargs)
        return budget.made(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Any:
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or value.__name__ not in (
            "format", "format_map",
        ):
            return None
        f_self = value.__self__
        if not isinstance(f_self, str):
            return None
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"
        formatter: _Formatter = (
            _EscapeFormatter(self, escape=f_self.escape) if isinstance(f_self, Markup) else _Formatter(self)
        )

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        return wraps(value)(wrapper)

    # Called from the generated code (see _CodeGenerator).
    def budget_out(self, convert: Any, value: Any) -> str:
        budget = _budget()
        budget.text(value, "An output chunk")
        text = convert(value)
        budget.fit(len(text), "An output chunk")
        budget.charge(len(text))
        return text

    def budget_text(self, text: str) -> str:
        _budget().charge(len(text))
        return text

    def budget_concat(self, join: Any, parts: tuple) -> str:
        budget = _budget()
        limit = budget.limits.max_output_chars
        budget.fit(sum(_text_size(part, limit) for part in parts), "The result of ~")
        return budget.made(join(parts))


env = _Environment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_ORIGINAL_FILTERS = dict(env.filters)
for _name, _func in _ORIGINAL_FILTERS.items():
    env.filters[_name] = _guard_filter(_name, _func)
env.filters["join"] = _join_filter
env.filters["tojson"] = _guard_filter("tojson", _tojson_filter)
env.filters["_count_loop"] = _count_loop
env.globals["lipsum"] = _lipsum

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


def render_string(source: str, context: dict[str, Any], *, limits: TemplateLimits | None = None) -> Any:
    if "{" not in source:  # fast path: most strings in a config are literals
        return source
    return _within_budget(limits, _render_checked, source, context)


def _within_budget(limits: TemplateLimits | None, render_fn, value: Any, context: dict[str, Any]) -> Any:
    """Run `render_fn` under the current render's budget (nested call, no explicit limits) or a fresh one."""
    if _BUDGET.get() is not None and limits is None:  # inside render(): share its budget
        return render_fn(value, context)
    token = _BUDGET.set(_Budget(limits or _LIMITS.get()))
    try:
        return render_fn(value, context)
    finally:
        _BUDGET.reset(token)


def _render_checked(source: str, context: dict[str, Any]) -> Any:
    try:
        return _render_string(source, context)
    except (TemplateError, TemplateLimitError):
        raise
    except RecursionError as exc:  # a macro calling itself: the budget's end, not a crash
        raise TemplateLimitError("recursion", "The template recursed too deeply (a macro calling itself?)") from exc
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
    budget = _budget()
    parts: list[str] = []
    total = 0
    for chunk in _template(source).generate(context):  # the output is capped as it arrives
        total += len(chunk)
        budget.fit(total, "The template's output")
        budget.clock()
        parts.append(chunk)
    return "".join(parts)


def render(value: Any, context: dict[str, Any], *, limits: TemplateLimits | None = None) -> Any:
    """Render strings; walk dicts and lists. Keys are not rendered. Raises jinja2.TemplateError, or
    TemplateLimitError when the render goes over its budget (one budget for the whole value)."""
    if isinstance(value, str) and "{" not in value:  # fast path: a literal needs no budget
        return value
    return _within_budget(limits, _render_value, value, context)


def _render_value(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        return {key: _render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_value(item, context) for item in value]
    return value
