"""PNG pictures of every mask kind, registered in :data:`PICTURE` (kind "picture").

Every entry is a renderer ``(out, **options) -> Path`` that draws one PNG and returns its path; ``masklab show
KIND`` parses the options, loads what a picture needs (a checkpoint, a sample) and calls it. Nothing here parses
arguments.
"""

from ._registry import PICTURE

# importing a picture module registers it; the order here is the order of `masklab list picture`
# isort: off
from . import corruption, generation, attention, sparsity, patches, seg, curves, moe  # noqa: F401, E402
# isort: on

__all__ = ["PICTURE"]
