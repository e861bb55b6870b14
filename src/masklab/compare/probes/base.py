"""The probe record, the probe registry, and the fit check (:mod:`masklab.compare.probes`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from masklab.registry import Registry

__all__ = ["PROBE", "Probe", "check_fits"]


@dataclass(frozen=True)
class Probe:
    modality: str  # the recipes' modality it reads (text, image, frames)
    metrics: dict[str, bool]  # metric -> whether higher is better
    run: Callable[[Path, object], dict[str, float]]  # (checkpoint folder, recipe) -> metrics
    needs: str = ""  # what a run must be, beyond its modality ("" = any run of the modality)
    fits: Callable[[object], bool] | None = None

    def __call__(self, folder: Path, recipe) -> dict[str, float]:
        return self.run(folder, recipe)


PROBE = Registry("probe", "probes: Probe(modality, metrics, run(checkpoint folder, recipe) -> {metric: value})")


def check_fits(probe: str, recipe) -> None:
    """A ValueError naming both when ``probe`` cannot read a run of ``recipe``."""
    p = PROBE.get(probe)
    if recipe.modality != p.modality:
        raise ValueError(f"probe {probe!r} reads {p.modality} runs; {recipe.name!r} is a {recipe.modality} recipe")
    if p.fits is not None and not p.fits(recipe):
        raise ValueError(f"probe {probe!r} needs {p.needs}; {recipe.name!r} is not one")
