"""The probes of ``masklab compare``: each reads a trained checkpoint and returns its metrics. Every run of a modality
meets the same probes on the same held-out data, so their numbers compare. ``masklab list probe`` names them all.

- text (:mod:`.text`): linear probes on frozen features and short full fine-tunes for line -> keyword and
  docstring -> package, identifier-role tagging, the NLL bound of generative runs, the accuracy of a fine-tuned
  run's own head, key-value retrieval by needle position;
- images (:mod:`.image`): linear and k-NN probes on digits, a per-patch segmentation probe on digit canvases;
- frames (:mod:`.frames`): a per-frame state probe on synthetic HMM signals.
"""

from masklab.compare.probes import frames, image, text  # noqa: F401  (each registers its probes)
from masklab.compare.probes.base import PROBE, Probe, check_fits

__all__ = ["PROBE", "Probe", "check_fits"]
