"""PNG rendering of every mask kind. ``masklab show KIND`` dispatches to the module named here.

Each module exposes ``add_arguments(parser)`` and ``run(args)``; the first line of its docstring is the help text.
"""

SHOW = {
    "corruption": "masklab.viz.corruption",  # token roles: kept, masked, replaced, random
    "generation": "masklab.viz.generation",  # unmasking order of a masked-diffusion sample
    "attention": "masklab.viz.attention",  # who may see whom, per layer
    "sparsity": "masklab.viz.sparsity",  # N:M patterns and per-layer sparsity
    "patches": "masklab.viz.patches",  # image patch masks
    "seg": "masklab.viz.seg",  # segmentation masks and decoded descriptors over an image
}
