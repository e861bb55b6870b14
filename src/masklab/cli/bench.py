"""``masklab bench``: list or run a script of a masklab checkout's ``benchmarks/`` folder."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from ._registry import COMMAND


def benchmarks_folder() -> Path:
    """``./benchmarks``, else the one beside the package's source tree (an editable install of a checkout).

    The benchmark scripts are not part of the installed package: a plain ``pip install masklab`` has none."""
    import masklab

    for folder in (Path("benchmarks"), Path(masklab.__file__).resolve().parents[2] / "benchmarks"):
        if folder.is_dir() and any(folder.glob("*.py")):
            return folder
    raise FileNotFoundError(
        "masklab bench runs the scripts of a masklab checkout's benchmarks/ folder, and there is none here or "
        "beside the installed package: run it from a clone of the repository"
    )


def run(args) -> None:
    folder = benchmarks_folder()
    scripts = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith(("_", "gpu_")))
    if not args.name:
        print("\n".join(scripts))
        return
    if args.name not in scripts:
        raise ValueError(f"unknown benchmark {args.name!r}; choose from {scripts}")
    sys.argv = [str(folder / f"{args.name}.py"), *args.args]
    runpy.run_path(sys.argv[0], run_name="__main__")


@COMMAND.register("bench", "list or run a benchmark script of a masklab checkout (benchmarks/)")
def setup(p) -> None:
    p.add_argument("name", nargs="?", help="script name (omit to list them)")
    p.add_argument("args", nargs="*", help="arguments for the script (after --)")
    p.set_defaults(func=run)
