"""``masklab list [KIND]`` and ``masklab recipes``: what is registered."""

from __future__ import annotations

from ._registry import COMMAND


def _table(rows: list[tuple[str, str]]) -> None:
    width = max((len(name) for name, _ in rows), default=0)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")


def run_list(args) -> None:
    from masklab.registry import kinds

    registries = kinds()
    if args.kind is None:
        for kind, reg in registries.items():
            print(f"{kind}: {len(reg)} entries; {reg.signature}")
        return
    if args.kind not in registries:
        raise ValueError(f"unknown kind {args.kind!r}; choose from: {', '.join(registries)}")
    _table([(e.name, e.summary) for e in registries[args.kind].entries()])


@COMMAND.register("list", "list the registered plug-ins of a kind (no kind: every kind)")
def setup_list(p) -> None:
    p.add_argument("kind", nargs="?", help="token | objective | recipe | ... (omit to list the kinds)")
    p.set_defaults(func=run_list)


def run_recipes(args) -> None:
    from masklab.train.recipes import RECIPES

    _table([(name, RECIPES[name].summary) for name in sorted(RECIPES)])


@COMMAND.register("recipes", "list the training recipes, one line each")
def setup_recipes(p) -> None:
    p.set_defaults(func=run_recipes)
