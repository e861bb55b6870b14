"""``masklab compare``: runs side by side at equal compute, several seeds, shared probes (:mod:`masklab.compare`)."""

from __future__ import annotations

from pathlib import Path

from ._args import positive_int
from ._registry import COMMAND


def comparison(args):
    from masklab.compare.spec import Comparison, load_spec, parse_budget, parse_run

    if args.spec:
        if args.runs or args.budget:
            raise ValueError("--spec holds the runs and the budget: give no RUN or --budget beside it")
        c = load_spec(args.spec)
        probes = tuple(p for x in args.probe for p in x.split(",") if p) or c.probes
        return Comparison(c.runs, c.budget, args.seeds or c.seeds, probes, (*c.shared, *args.set))
    if not args.runs or not args.budget:
        raise ValueError("give the runs (recipe[:key=value,...]) and --budget KIND=N, or --spec FILE.toml")
    probes = tuple(p for x in args.probe for p in x.split(",") if p)
    runs = tuple(parse_run(r) for r in args.runs)
    return Comparison(runs, parse_budget(args.budget), args.seeds or 3, probes, tuple(args.set))


def run(args) -> None:
    from masklab.compare import compare, report

    c = comparison(args)
    out = Path(args.out)
    records = compare(c, out, points=args.points, workers=args.workers, progress=not args.no_progress)
    for line in report(records, c.probes, out, c.budget):
        print(line)
    print(f"table: {out / 'table.md'}\ncurves: {out / 'curves.png'}\nresults: {out / 'results.jsonl'}")


@COMMAND.register("compare", "train runs to the same compute budget over seeds, probe them, report CIs and verdicts")
def setup(p) -> None:
    p.add_argument("runs", nargs="*", metavar="RUN", help="recipe[:key=value,...], e.g. mlm electra:sharing=gdes")
    p.add_argument("--budget", help="flops=N | tokens=N | minutes=N, the same for every run")
    p.add_argument("--seeds", type=positive_int, default=None, help="seeds per run (default 3)")
    p.add_argument("--probe", action="append", default=[], help="probe name(s), comma-separated (masklab list probe)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run")
    p.add_argument("--spec", help="a TOML file with the runs, budget, seeds, probes and shared overrides")
    p.add_argument("--points", type=positive_int, default=4, help="probe each run at this many points (curves)")
    p.add_argument("--workers", type=positive_int, default=1, help="runs trained in parallel processes")
    p.add_argument("--out", required=True, help="the comparison folder (resumes what a killed compare left)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
