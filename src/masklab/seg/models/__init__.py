"""Segmentation models that read and write masks through a language model, trained on the canvas world.

* :mod:`~masklab.seg.models.vocab`: the word-level tokenizer of expressions, descriptors and bricks;
* :mod:`~masklab.seg.models.rows`: canvas examples packed as rows, the answer formats and how answers are read;
* :mod:`~masklab.seg.models.vlm`: the tiny InternVL they share, greedy decoding with a KV cache;
* :mod:`~masklab.seg.models.stamp`: STAMP's all-mask prediction (mixed attention, one pass for the mask);
* :mod:`~masklab.seg.models.mllmseg`: MLLMSeg's light mask decoder.

Their objectives are :mod:`masklab.objectives.text4seg` (Text4Seg, Text4Seg++ bricks),
:mod:`masklab.objectives.stamp` and :mod:`masklab.objectives.mllmseg`; their recipes ``text4seg-canvas``,
``text4seg-bricks``, ``stamp-canvas`` and ``mllmseg-canvas``. Importing :mod:`~masklab.seg.models.stamp` or
:mod:`~masklab.seg.models.mllmseg` registers its model with ``AutoConfig`` / ``AutoModel``.
"""
