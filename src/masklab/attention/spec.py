"""A small text grammar for attention masks, used by ``masklab show attention`` and the examples.

Grammar (whitespace ignored)::

    spec      := expr | "layerwise:" layers
    expr      := term ("|" term)*                       union (or_masks)
    term      := factor ("&" factor)*                   intersection (and_masks), binds tighter than "|"
    factor    := "~" factor | "(" expr ")" | atom        "~" is not_mask
    atom      := NAME [":" INT ("," INT)*]              e.g. sliding_window:64, document:3,5,8
               | NAME("_" INT)+                         a factory's __name__, e.g. sliding_window_64
    layers    := group (sep group)*                     sep is ";" (or "," when no group needs commas)
    group     := expr "=" RANGE ("," RANGE)*            RANGE is "i" or "i-j" (inclusive), layer indices

NAME is one of: ``full``, ``bidir`` / ``bidirectional`` [lengths per row], ``causal``, ``padding`` lengths,
``prefix_lm`` n, ``sliding_window`` w, ``local_window`` w (symmetric), ``dilated_sliding_window`` w,d, ``sinks`` k,
``document`` lengths, ``causal_document`` lengths, ``block_causal`` b.

Examples: ``causal``, ``causal&sliding_window:8``, ``causal&(sliding_window:4|sinks:2)``, ``document:3,5,8``,
``layerwise:bidir=0-1,causal=2-3``, ``layerwise:document:4,4=0;causal=1-3``.
"""

from __future__ import annotations

import re

from masklab.attention import mods

__all__ = ["parse", "parse_layerwise", "is_layerwise", "parse_layers", "FACTORIES"]


def _no_args(name, f):
    def build(args):
        if args:
            raise ValueError(f"mask {name} takes no arguments, got {args}")
        return f()

    return build


def _n_args(name, n, f):
    def build(args):
        if len(args) != n:
            raise ValueError(f"mask {name} takes {n} int argument(s), got {args}")
        return f(*args)

    return build


def _list_arg(name, f):
    def build(args):
        if not args:
            raise ValueError(f"mask {name} needs a list of lengths, e.g. {name}:3,5")
        return f(args)

    return build


FACTORIES = {
    "full": _no_args("full", mods.full),
    "bidir": lambda a: mods.bidirectional(a or None),
    "bidirectional": lambda a: mods.bidirectional(a or None),
    "causal": _no_args("causal", mods.causal),
    "padding": _list_arg("padding", mods.padding),
    "prefix_lm": _n_args("prefix_lm", 1, mods.prefix_lm),
    "sliding_window": _n_args("sliding_window", 1, mods.sliding_window),
    "local_window": _n_args("local_window", 1, lambda w: mods.sliding_window(w, causal=False)),
    "dilated_sliding_window": _n_args("dilated_sliding_window", 2, mods.dilated_sliding_window),
    "sinks": _n_args("sinks", 1, mods.sinks),
    "document": _list_arg("document", mods.document),
    "causal_document": _list_arg("causal_document", lambda a: mods.document(a, causal=True)),
    "block_causal": _n_args("block_causal", 1, mods.block_causal),
}

_TOKEN = re.compile(r"\s*(?:(?P<int>-?\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[&|~():,]))")


def _tokenize(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad attention spec {text!r}: unexpected {text[pos:]!r}")
        kind = m.lastgroup
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            want = f"{value!r}" if value else "more input"
            raise ValueError(f"bad attention spec {self.text!r}: expected {want}, got {tok[1]!r}")
        self.i += 1
        return tok

    def expr(self):
        parts = [self.term()]
        while self.peek()[1] == "|":
            self.take("|")
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else mods.or_masks(*parts)

    def term(self):
        parts = [self.factor()]
        while self.peek()[1] == "&":
            self.take("&")
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else mods.and_masks(*parts)

    def factor(self):
        kind, value = self.peek()
        if value == "~":
            self.take("~")
            return mods.not_mask(self.factor())
        if value == "(":
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        if kind != "name":
            raise ValueError(f"bad attention spec {self.text!r}: expected a mask name, got {value!r}")
        self.take()
        return self.atom(value)

    def atom(self, name: str):
        args: list[int] = []
        base = name
        while base not in FACTORIES and (m := re.fullmatch(r"(.+)_(\d+)", base)):
            base, args = m.group(1), [int(m.group(2)), *args]
        if base not in FACTORIES:
            raise ValueError(f"unknown mask {name!r} in spec {self.text!r}; known: {', '.join(sorted(FACTORIES))}")
        if self.peek()[1] == ":":
            if args:
                raise ValueError(f"bad attention spec {self.text!r}: {name} has both _ and : arguments")
            self.take(":")
            args.append(self._int())
            # a comma continues the list only when an int follows (a "," before a name ends the atom)
            while self.peek()[1] == "," and self.i + 1 < len(self.toks) and self.toks[self.i + 1][0] == "int":
                self.take(",")
                args.append(self._int())
        return FACTORIES[base](args)

    def _int(self) -> int:
        kind, value = self.take()
        if kind != "int":
            raise ValueError(f"bad attention spec {self.text!r}: expected an int, got {value!r}")
        return int(value)


def is_layerwise(spec: str) -> bool:
    return spec.strip().startswith("layerwise:")


def parse(spec: str) -> mods.MaskFn:
    """Parse one mask expression (see the module docstring) into a named mask function."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"attention spec must be a non-empty string, got {spec!r}")
    if is_layerwise(spec):
        raise ValueError(f"spec {spec!r} is layer-wise; use parse_layerwise")
    p = _Parser(spec)
    fn = p.expr()
    if p.i != len(p.toks):
        raise ValueError(f"bad attention spec {spec!r}: trailing {''.join(v for _, v in p.toks[p.i :])!r}")
    return fn


def parse_layers(text: str) -> list[int]:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]`` (inclusive ranges, no duplicates)."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ValueError(f"bad layer range {part!r} in {text!r}; expected i or i-j")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad layer range {part!r}: end before start")
        out.extend(range(lo, hi + 1))
    if len(set(out)) != len(out):
        raise ValueError(f"layer listed twice in {text!r}")
    return out


def parse_layerwise(spec: str) -> dict[int, mods.MaskFn]:
    """``"layerwise:bidir=0-1,causal=2-3"`` -> ``{0: full, 1: full, 2: causal, 3: causal}``, by layer."""
    if not is_layerwise(spec):
        raise ValueError(f"layer-wise spec must start with 'layerwise:', got {spec!r}")
    body = spec.strip().removeprefix("layerwise:")
    if ";" in body:
        groups = body.split(";")
    else:  # "bidir=0,2,causal=1,3": a piece without "=" continues the previous group's layer list
        groups = []
        for piece in body.split(","):
            if "=" in piece or not groups:
                groups.append(piece)
            else:
                groups[-1] += "," + piece
    plan: dict[int, mods.MaskFn] = {}
    for group in groups:
        if "=" not in group:
            raise ValueError(f"bad layer group {group!r} in {spec!r}; expected MASK=LAYERS")
        expr, layers = group.rsplit("=", 1)
        fn = parse(expr)
        for layer in parse_layers(layers):
            if layer in plan:
                raise ValueError(f"layer {layer} assigned twice in {spec!r}")
            plan[layer] = fn
    if not plan:
        raise ValueError(f"layer-wise spec {spec!r} assigns no layer")
    return dict(sorted(plan.items()))
