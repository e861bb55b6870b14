"""What a comparison is: runs (``recipe[:key=value,...]``), one budget, seeds and probes, from the command line or
a TOML spec, checked before anything trains.

A spec file holds the same fields::

    budget = "tokens=20000"
    seeds = 3
    probes = ["keyword"]
    set = ["preset=micro"]        # overrides shared by every run

    [[run]]
    recipe = "mlm"

    [[run]]
    recipe = "electra"
    set = { sharing = "gdes" }
    label = "electra-gdes"        # optional; default: the RUN text
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

__all__ = ["Budget", "RunSpec", "Comparison", "parse_run", "parse_budget", "load_spec"]

BUDGET_KINDS = ("flops", "tokens", "minutes")


@dataclass(frozen=True)
class Budget:
    """Training compute per run: ``flops`` (6 x trained params x tokens + 2 x frozen params x tokens), ``tokens``
    (training tokens, or patches for images), or wall ``minutes``."""

    kind: str
    amount: float

    def __str__(self) -> str:
        return f"{self.kind}={self.amount:g}"


@dataclass(frozen=True)
class RunSpec:
    label: str
    recipe: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunSpec, ...]
    budget: Budget
    seeds: int = 3
    probes: tuple[str, ...] = ()
    shared: tuple[str, ...] = field(default=())  # overrides applied to every run before its own

    def to_dict(self) -> dict:
        return asdict(self)


def parse_budget(text: str) -> Budget:
    kind, sep, value = text.partition("=")
    if not sep or kind not in BUDGET_KINDS:
        raise ValueError(f"budget {text!r} must be KIND=N with KIND one of {', '.join(BUDGET_KINDS)}")
    try:
        amount = float(value)
    except ValueError:
        raise ValueError(f"budget {text!r}: {value!r} is not a number") from None
    if not amount > 0:
        raise ValueError(f"budget {text!r} must be positive")
    return Budget(kind, amount)


# a comma starts a new override only before `key=` (so lora_targets=q_proj,v_proj keeps its comma)
_SPLIT = re.compile(r",(?=\s*[A-Za-z_]\w*=)")


def parse_run(text: str) -> RunSpec:
    """``recipe[:key=value,...]`` -> RunSpec (labelled by the text itself)."""
    name, _, rest = text.partition(":")
    if not name:
        raise ValueError(f"run {text!r} must look like recipe[:key=value,...]")
    overrides = tuple(s.strip() for s in _SPLIT.split(rest) if s.strip()) if rest else ()
    for o in overrides:
        if "=" not in o:
            raise ValueError(f"run {text!r}: {o!r} must look like key=value")
    return RunSpec(text, name, overrides)


def _string_list(value, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(f"spec: {what} must be a string or a list of strings")


def _overrides(value, what: str) -> tuple[str, ...]:
    if isinstance(value, dict):
        return tuple(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items())
    return _string_list(value, what)


def load_spec(path) -> Comparison:
    """A :class:`Comparison` from a TOML file (see the module docstring); a malformed one is one ValueError."""
    import tomllib
    from pathlib import Path

    try:
        data = tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"spec {path}: not valid TOML ({e})") from None
    known = {"budget", "seeds", "probes", "set", "run"}
    if unknown := sorted(set(data) - known):
        raise ValueError(f"spec {path}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "budget" not in data or "run" not in data:
        raise ValueError(f"spec {path}: needs a budget and at least one [[run]]")
    runs = []
    for i, r in enumerate(data["run"] if isinstance(data["run"], list) else [None]):
        if not isinstance(r, dict) or not isinstance(r.get("recipe"), str):
            raise ValueError(f'spec {path}: run {i + 1} needs recipe = "NAME"')
        if unknown := sorted(set(r) - {"recipe", "set", "label"}):
            raise ValueError(f"spec {path}: run {i + 1} has unknown field(s) {', '.join(unknown)}")
        overrides = _overrides(r.get("set", []), f"run {i + 1} set")
        label = r.get("label") or (r["recipe"] + (":" + ",".join(overrides) if overrides else ""))
        runs.append(RunSpec(str(label), r["recipe"], overrides))
    seeds = data.get("seeds", 3)
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"spec {path}: seeds must be a positive integer")
    return Comparison(
        tuple(runs),
        parse_budget(str(data["budget"])),
        seeds,
        _string_list(data.get("probes", []), "probes"),
        _overrides(data.get("set", []), "set"),
    )
