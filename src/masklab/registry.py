"""The one registry shape for every plug-in kind.

A registry maps a name to an :class:`Entry`: the name, one callable with the kind's single signature, and a
one-line summary. ``masklab list [KIND]`` prints them, and the tests are parametrized over each registry, so an
entry is tested as soon as it is registered (timm's ``@register_model`` with tests over ``list_models()``).

    TOKEN = Registry("token", "token corruptions: (ids, keys, info, can, **options) -> Corruption")

    @TOKEN.register("random", "BERT 80/10/10 over eligible tokens")
    def random(ids, keys, info, can, **options): ...

    TOKEN["random"].fn(...)

Every registry made with :class:`Registry` is listed in :data:`KINDS`, in the order the modules that fill them are
imported; :func:`kinds` imports them all first, so ``masklab list`` sees every kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    name: str
    fn: Callable[..., Any]
    summary: str


KINDS: dict[str, Registry] = {}

# The modules whose import fills each kind's registry; `kinds()` imports them so every kind is listed.
_PROVIDERS = (
    "masklab.corrupt.strategies",
    "masklab.objectives",
    "masklab.sample.samplers",
    "masklab.sparsity",
    "masklab.train.recipes",
    "masklab.viz",
    "masklab.compare",
    "masklab.cli",
)


class Registry:
    """Named plug-ins of one kind, in registration order."""

    def __init__(self, kind: str, signature: str):
        if kind in KINDS:
            raise ValueError(f"a registry of kind {kind!r} exists already")
        self.kind = kind
        self.signature = signature  # the one call signature every entry of this kind has, for `masklab list`
        self._entries: dict[str, Entry] = {}
        KINDS[kind] = self

    def register(self, name: str, summary: str, fn: Callable | None = None):
        """Register `fn` under `name`; without `fn`, return a decorator that does."""
        if not summary or "\n" in summary:
            raise ValueError(f"{self.kind} {name!r}: the summary must be one non-empty line")

        def add(f: Callable) -> Callable:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered already")
            self._entries[name] = Entry(name, f, summary)
            return f

        return add if fn is None else add(fn)

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from: {', '.join(self._entries)}") from None

    def get(self, name: str) -> Callable:
        """The callable registered under `name` (a one-line ValueError naming the choices if there is none)."""
        return self[name].fn

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"


def kinds() -> dict[str, Registry]:
    """Every registry, after importing the modules that fill them."""
    for module in _PROVIDERS:
        importlib.import_module(module)
    return dict(KINDS)
