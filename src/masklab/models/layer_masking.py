"""Layer masking: run a CNN on the visible pixels only, carrying the input mask through every layer instead of
painting masked pixels grey or black.

Balasubramanian & Feizi 2023, "Towards Improved Input Masking for Convolutional Neural Networks" (ICCV), Sec. 3,
as in the reference code (``SriramB-98/layer_masking``, ``sal_layers.py``: ``MyConv2d``, ``MyMaxPool2d``, ...).
With m the mask of a layer's input (1 visible, 0 masked) and ``(B, C, H, W)`` activations:

- convolution: the masked entries next to visible ones are filled with the mean of their visible 3x3 neighbours,
  one ring per round for as many rounds as the kernel is wide (:func:`neighbour_fill`, the reference's
  ``fast_fmm``), so a kernel that straddles the mask edge sees plausible values made from visible pixels only;
  then ``y = conv(filled) * m'`` with ``m' = maxpool(m)`` over the convolution's window, stride and padding: an
  output is kept when any of its inputs was visible.
- max / average pooling: ``pool(x) * pool(m)`` (average: the pooled mask made binary).
- batch norm and elementwise activations: ``f(x * m) * m``.
- adaptive average pooling: the mean over visible positions, ``avg(x * m) / avg(m)``; the mask ends there.
- flatten, linear, dropout and identity: unchanged; the masked entries are already 0.

So the output does not depend on the values under the mask (the tests check it bit for bit with hypothesis), and
no grey or black "missing" colour enters the network: the paper's fix for missingness bias. :class:`LayerMasking`
wraps any ``nn.Sequential`` of those layers (nested ones are flattened); another layer while the mask is still a
spatial map is a ValueError naming it. Residual networks need the mask at each addition (the reference's
``sal_resnet.py``) and are not covered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["neighbour_fill", "LayerMasking", "fill"]

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.ELU)
KEEP_MASK = (nn.Dropout, nn.Identity)  # elementwise and 0 -> 0: the mask stays as it is
END_MASK = (nn.Flatten, nn.Linear)  # the map becomes features; the masked entries are 0 already


def _ring_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over each 3x3 neighbourhood (zero padding), per channel: ``(B, C, H, W) -> (B, C, H, W)``."""
    C = t.shape[1]
    return F.conv2d(t, torch.ones(C, 1, 3, 3, dtype=t.dtype, device=t.device), padding=1, groups=C)


def neighbour_fill(x: torch.Tensor, mask: torch.Tensor, iters: int) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` with masked entries (``mask`` ``(B, 1, H, W)``, 1 = visible) replaced: masked values
    become 0, then ``iters`` rounds each fill the masked entries that touch the known region with the mean of their
    known 3x3 neighbours and add them to it (the reference's ``fast_fmm``). Entries more than ``iters`` rings from
    any visible one stay 0. The result depends on the visible values only."""
    known = mask.to(x.dtype)
    out = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))  # NaN/inf under the mask: 0
    for _ in range(iters):
        total, count = _ring_sum(out * known), _ring_sum(known)  # (B, C, H, W), (B, 1, H, W)
        new = (count > 0) & (known == 0)  # masked entries touching the known region
        out = torch.where(new, total / count.clamp(min=1), out)
        known = torch.maximum(known, (count > 0).to(x.dtype))
    return out


def _pool_mask(layer: nn.Module, m: torch.Tensor) -> torch.Tensor:
    """Max-pool of the mask over ``layer``'s window, stride, padding and dilation (conv or max pool)."""
    return F.max_pool2d(m, layer.kernel_size, layer.stride, layer.padding, getattr(layer, "dilation", 1))


def _conv(layer: nn.Conv2d, x, m):
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        raise ValueError(f"layer masking needs a Conv2d with numeric zero padding, got {layer}")
    filled = neighbour_fill(x, m, iters=layer.kernel_size[-1])  # the reference fills kernel-width rings
    m_out = _pool_mask(layer, m)
    return layer(filled) * m_out, m_out


def _step(layer: nn.Module, x: torch.Tensor, m: torch.Tensor | None):
    """One layer under the mask: ``(x, m) -> (x', m')``; ``m' = None`` once the mask has been pooled away."""
    if m is None or isinstance(layer, END_MASK):
        return layer(x), None
    if isinstance(layer, KEEP_MASK):
        return layer(x), m
    if isinstance(layer, nn.Conv2d):
        return _conv(layer, x, m)
    if isinstance(layer, nn.MaxPool2d):
        m_out = _pool_mask(layer, m)
        return layer(x) * m_out, m_out
    if isinstance(layer, nn.AvgPool2d):
        m_out = (F.avg_pool2d(m, layer.kernel_size, layer.stride, layer.padding) > 0).to(m.dtype)
        return layer(x) * m_out, m_out
    if isinstance(layer, (nn.BatchNorm2d, *ELEMENTWISE)):
        return layer(x * m) * m, m
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        return layer(x * m) / layer(m).clamp(min=1e-8), None  # mean over visible positions; none visible: 0
    raise ValueError(f"layer masking does not know how to carry a mask through {type(layer).__name__}")


def _layers(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential of conv/pool/norm/activation/linear layers, got "
                        f"{type(model).__name__}")  # fmt: skip
    out = []
    for layer in model:
        out.extend(_layers(layer) if isinstance(layer, nn.Sequential) else [layer])
    return out


def _as_mask(mask, x: torch.Tensor) -> torch.Tensor:
    """``mask`` ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)`` (1 or True = visible) as a float ``(B, 1, H, W)``."""
    if not torch.is_tensor(mask):
        raise TypeError(f"mask must be a tensor, got {type(mask).__name__}")
    B, _, H, W = x.shape
    m = mask.reshape(1, 1, H, W) if mask.dim() == 2 else mask[:, None] if mask.dim() == 3 else mask
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[2:] != (H, W) or m.shape[0] not in (1, B):
        raise ValueError(f"mask must be (H, W), (B, H, W) or (B, 1, H, W) for images {tuple(x.shape)}, got "
                         f"{tuple(mask.shape)}")  # fmt: skip
    if not mask.dtype == torch.bool and not ((mask == 0) | (mask == 1)).all():
        raise ValueError("mask must be boolean or hold only 0 and 1")
    return m.to(x.dtype).expand(B, 1, H, W)


class LayerMasking(nn.Module):
    """``LayerMasking(cnn)(x, mask)``: ``cnn``'s output on the visible pixels of ``x`` ``(B, C, H, W)`` only, the
    mask (1 = visible) carried through every layer (see the module docstring). ``mask=None`` runs ``cnn`` as is.
    The wrapper holds no parameters of its own: it shares ``cnn``'s."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        self.layers = _layers(model)
        self.model = model

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"x must be images (B, C, H, W), got shape {tuple(x.shape)}")
        if mask is None:
            return self.model(x)
        m = _as_mask(mask, x)
        x = torch.where(m.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
        for layer in self.layers:
            x, m = _step(layer, x, m)
        return x


def fill(x: torch.Tensor, mask: torch.Tensor, value: float) -> torch.Tensor:
    """The baseline layer masking replaces: masked pixels painted ``value`` (0: black; grey: mid-range)."""
    m = _as_mask(mask, x).bool()
    return torch.where(m, x, torch.full((), value, dtype=x.dtype, device=x.device))
