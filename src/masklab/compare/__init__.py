"""``masklab compare``: methods side by side at equal compute (:mod:`~masklab.compare.harness`), probed the same
way (:mod:`~masklab.compare.probes`, registry kind "probe"), reported with CIs (:mod:`~masklab.compare.report`)."""

from masklab.compare.flops import flops_per_step
from masklab.compare.harness import compare, plan
from masklab.compare.probes import PROBE
from masklab.compare.report import report
from masklab.compare.spec import Budget, Comparison, RunSpec, load_spec, parse_budget, parse_run

__all__ = ["PROBE", "Budget", "Comparison", "RunSpec", "compare", "flops_per_step", "load_spec", "parse_budget",
           "parse_run", "plan", "report"]  # fmt: skip
