"""Segmentation masks as data and text: COCO RLE, Text4Seg descriptors, metrics, pooling, click simulation."""

from masklab.seg.clicks import Click, next_click, noc, simulate
from masklab.seg.descriptors import (
    Brick,
    decode_bricks,
    decode_descriptors,
    encode_bricks,
    encode_descriptors,
    grid_to_mask,
    mask_to_brick,
    mask_to_grid,
)
from masklab.seg.metrics import ciou, giou, iou, precision_at
from masklab.seg.pooling import MaskAdapter, mask_pool
from masklab.seg.rle import area, bbox, merge, rle_decode, rle_encode

__all__ = [
    "rle_encode",
    "rle_decode",
    "area",
    "bbox",
    "merge",
    "mask_to_grid",
    "encode_descriptors",
    "decode_descriptors",
    "grid_to_mask",
    "Brick",
    "mask_to_brick",
    "encode_bricks",
    "decode_bricks",
    "iou",
    "giou",
    "ciou",
    "precision_at",
    "mask_pool",
    "MaskAdapter",
    "Click",
    "next_click",
    "simulate",
    "noc",
]
