"""Head masks, and the low-rank channels through which one attention head talks to a later one.

Merullo, Eickhoff & Pavlick 2024, "Talking Heads: Understanding Inter-layer Communication in Transformer Language
Models" (NeurIPS; arXiv:2406.09519), Sec. 3, with the composition scores of Elhage et al. 2021 ("A Mathematical
Framework for Transformer Circuits") that it builds on.

**Head masks** (:func:`head_mask`): keep or zero each attention head of any Hugging Face model. A forward pre-hook
on each layer's attention output projection (``o_proj``, ``Wo``, ``c_proj``, ``out_proj``, ``attention.output.
dense``, ...) scales the input slice of each head, ``(..., H * d_head)`` seen as ``(..., H, d_head)``; that equals
zeroing the head's columns of W_O (the test's oracle), and needs no attention-implementation support.

**Circuits** (Llama-family models: ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj`` and an RMSNorm gain g before
attention, folded into the weights as TransformerLens' ``fold_ln`` does). In the column convention ``y = W x``
with residual vectors x of width d:

    OV_h = W_O^h W_V^h diag(g)                   (d, d): what head h writes, given what it reads
    QK_h = (W_Q^h diag(g))^T W_K^h diag(g)       (d, d): its score is x_q^T QK_h x_k

RoPE rotates queries and keys by position; QK_h is the form at relative offset 0 (the paper analyses GPT-2, whose
positions are absolute). A later reader head composes with a writer's output A = OV_writer through its queries,
keys or values (Elhage et al.): the composition score is ``||M||_F / (||A||_F ||B||_F)`` with M = B^T A (Q),
B A (K) or B A with B the reader's OV (V).

**Channels** (the paper's SVD analysis): with A = sum_i s_i u_i v_i^T, each rank-1 component gets its own
composition score with the reader, ``||B' u_i|| / ||B||_F`` (B' = B^T, B or the reader's OV): u_i is a direction the
writer writes, and the score says how strongly the reader reads it. Component i's share of the pair's composition
is ``s_i^2 score_i^2 / sum_j s_j^2``; the shares add up to the squared composition score of the whole matrices
(tested). A channel is the top components of a (writer, reader) pair; :func:`remove_directions` edits the
writer's W_O so that it no longer writes along them (the paper's weight edit), to ablate a channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "output_projections",
    "head_mask",
    "head_circuits",
    "composition_score",
    "component_scores",
    "Channel",
    "channels",
    "remove_directions",
]

# suffixes of the module that maps the concatenated heads back to the residual stream, per model family
_OUT_PROJ = (
    "self_attn.o_proj",  # Llama, Mistral, Qwen, Gemma, Mixtral, OLMo, Phi-3
    "attn.Wo",  # ModernBERT
    "attn.c_proj",  # GPT-2 (Conv1D)
    "self_attn.out_proj",  # OPT, BART, Whisper, CLIP
    "attn.out_proj",  # GPT-J, CodeGen
    "attention.output.dense",  # BERT, RoBERTa, ELECTRA, DeBERTa, MiniLM
    "attention.dense",  # GPT-NeoX, Pythia
    "self_attention.dense",  # Falcon, BLOOM
)
KINDS = ("q", "k", "v")


def _n_heads(model) -> int:
    config = getattr(model, "config", None)
    for key in ("num_attention_heads", "n_head", "num_heads"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    raise ValueError("model has no config.num_attention_heads (nor n_head): cannot split the heads")


def _in_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features
    if type(module).__name__ == "Conv1D":  # GPT-2's transposed linear: weight (in, out)
        return module.weight.shape[0]
    raise ValueError(f"attention output projection {type(module).__name__} is neither a Linear nor a Conv1D")


def output_projections(model: nn.Module) -> list[nn.Module]:
    """Each layer's attention output projection, in layer order (see the module docstring for the families)."""
    found = [m for name, m in model.named_modules() if name.endswith(_OUT_PROJ)]
    if not found:
        raise ValueError(f"found no attention output projection in {type(model).__name__} (looked for modules "
                         f"named *{', *'.join(_OUT_PROJ)})")  # fmt: skip
    return found


@contextmanager
def head_mask(model: nn.Module, keep: torch.Tensor) -> Iterator[nn.Module]:
    """Within the block, every forward of ``model`` runs with head h of layer l scaled by ``keep[l, h]`` (bool:
    keep or zero; float: scale). ``keep`` is ``(layers, heads)``. The hooks are removed on exit."""
    projections = output_projections(model)
    H = _n_heads(model)
    if not torch.is_tensor(keep) or keep.shape != (len(projections), H):
        raise ValueError(f"keep must be a tensor (layers, heads) = {(len(projections), H)}, got "
                         f"{tuple(keep.shape) if torch.is_tensor(keep) else type(keep).__name__}")  # fmt: skip
    for proj in projections:
        if _in_features(proj) % H:
            raise ValueError(f"the output projection's {_in_features(proj)} inputs do not split into {H} heads")

    def hook_for(row: torch.Tensor):
        def scale_heads(module, args):
            x = args[0]  # (..., H * d_head): the heads' outputs side by side
            x = (x.unflatten(-1, (H, -1)) * row.to(x.dtype)[:, None]).flatten(-2)
            return (x, *args[1:])

        return scale_heads

    handles = [p.register_forward_pre_hook(hook_for(keep[i].to(_device(p)))) for i, p in enumerate(projections)]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _llama_layers(model: nn.Module):
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if layers is None or not all(hasattr(getattr(lay, "self_attn", None), "q_proj") for lay in layers):
        raise ValueError(f"circuits need a Llama-family model (layers[i].self_attn.q_proj/k_proj/v_proj/o_proj), "
                         f"got {type(model).__name__}")  # fmt: skip
    return layers


@dataclass(frozen=True)
class Circuits:
    """Every head's OV and QK, ``(layers, heads, d, d)`` each, float64."""

    ov: torch.Tensor
    qk: torch.Tensor


@torch.no_grad()
def head_circuits(model: nn.Module) -> Circuits:
    """OV and QK of every head of a Llama-family ``model`` (the input RMSNorm gain folded in, RoPE left out)."""
    layers = _llama_layers(model)
    config = model.config
    H, H_kv = config.num_attention_heads, getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    ov, qk = [], []
    for layer in layers:
        attn, g = layer.self_attn, layer.input_layernorm.weight.double()  # (d,)
        d_head = attn.q_proj.weight.shape[0] // H
        Wq = attn.q_proj.weight.double().view(H, d_head, -1) * g  # (H, d_head, d)
        Wk = attn.k_proj.weight.double().view(H_kv, d_head, -1) * g
        Wv = attn.v_proj.weight.double().view(H_kv, d_head, -1) * g
        Wo = attn.o_proj.weight.double().view(-1, H, d_head).transpose(0, 1)  # (H, d, d_head)
        kv = torch.arange(H) // (H // H_kv)  # the key/value head each query head shares (GQA)
        ov.append(Wo @ Wv[kv])  # (H, d, d)
        qk.append(Wq.transpose(1, 2) @ Wk[kv])  # (H, d, d)
    return Circuits(torch.stack(ov), torch.stack(qk))


def _reader_side(B: torch.Tensor, kind: str) -> torch.Tensor:
    """The matrix that multiplies the writer's output on the reader's side: QK^T (q), QK (k), OV (v)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS} (query, key or value composition), got {kind!r}")
    return B.transpose(-1, -2) if kind == "q" else B


def composition_score(A: torch.Tensor, B: torch.Tensor, kind: str) -> torch.Tensor:
    """Elhage et al.'s composition score of a writer's OV ``A`` with a reader's QK (or OV, for ``kind="v"``)
    ``B``, both ``(..., d, d)``: ``||B' A||_F / (||A||_F ||B||_F)``."""
    M = _reader_side(B, kind) @ A
    return torch.linalg.matrix_norm(M) / (torch.linalg.matrix_norm(A) * torch.linalg.matrix_norm(B))


@dataclass(frozen=True)
class Components:
    """The writer's SVD components and their composition with one reader, largest singular value first."""

    sigma: torch.Tensor  # (r,) singular values of the writer's OV
    u: torch.Tensor  # (d, r) the directions it writes
    scores: torch.Tensor  # (r,) composition score of each rank-1 component with the reader
    share: torch.Tensor  # (r,) each component's part of the squared composition score (they add up to it)


def component_scores(A: torch.Tensor, B: torch.Tensor, kind: str, rank: int | None = None) -> Components:
    """Composition of each singular component of the writer's OV ``A`` ``(d, d)`` with the reader's ``B`` (see
    the module docstring); ``rank``: keep the top ``rank`` components (default: all)."""
    if A.dim() != 2 or A.shape[0] != A.shape[1] or B.shape != A.shape:
        raise ValueError(f"A and B must be square (d, d) matrices of one size, got {tuple(A.shape)}, {tuple(B.shape)}")
    U, S, _ = torch.linalg.svd(A)
    r = S.numel() if rank is None else rank
    if not 1 <= r <= S.numel():
        raise ValueError(f"rank must be in [1, {S.numel()}], got {rank}")
    U, S = U[:, :r], S[:r]
    read = _reader_side(B, kind) @ U  # (d, r): what the reader makes of each written direction
    scores = torch.linalg.vector_norm(read, dim=0) / torch.linalg.matrix_norm(B)
    share = S.square() * scores.square() / torch.linalg.matrix_norm(A).square()
    return Components(S, U, scores, share)


@dataclass(frozen=True)
class Channel:
    """A low-rank channel: the top ``rank`` components of ``writer``'s OV by their share of its composition with
    ``reader`` (each a (layer, head)); ``score`` is the square root of their summed share."""

    writer: tuple[int, int]
    reader: tuple[int, int]
    kind: str
    score: float
    directions: torch.Tensor  # (d, rank) orthonormal directions in the residual stream


def channels(model: nn.Module, kind: str = "k", rank: int = 1, top: int = 10) -> list[Channel]:
    """The ``top`` channels of ``model`` over every (writer, reader) head pair with the writer in an earlier
    layer, ranked by score (see :class:`Channel`)."""
    c = head_circuits(model)
    L, H = c.ov.shape[:2]
    if not 1 <= rank <= c.ov.shape[-1] or top < 1:
        raise ValueError(f"rank must be in [1, {c.ov.shape[-1]}] and top >= 1, got rank={rank}, top={top}")
    found = []
    for lw in range(L):
        for hw in range(H):
            U, S, _ = torch.linalg.svd(c.ov[lw, hw])
            total = S.square().sum()
            for lr in range(lw + 1, L):
                readers = _reader_side(c.ov[lr] if kind == "v" else c.qk[lr], kind)  # (H, d, d)
                read = torch.linalg.vector_norm(readers @ U, dim=1) / torch.linalg.matrix_norm(readers)[:, None]
                share = S.square() * read.square() / total  # (H, d): each reader, each component
                best = share.topk(rank, dim=-1)
                for hr in range(H):
                    score = float(best.values[hr].sum().sqrt())
                    found.append(Channel((lw, hw), (lr, hr), kind, score, U[:, best.indices[hr]].float()))
    found.sort(key=lambda ch: -ch.score)
    return found[:top]


@contextmanager
def remove_directions(model: nn.Module, layer: int, head: int, directions: torch.Tensor) -> Iterator[nn.Module]:
    """Within the block, head ``head`` of ``layer`` writes nothing along ``directions`` ``(d, r)`` (orthonormal
    columns): its W_O block becomes ``(I - D D^T) W_O^h``. The weight is restored on exit."""
    layers = _llama_layers(model)
    H = model.config.num_attention_heads
    if not (0 <= layer < len(layers) and 0 <= head < H):
        raise ValueError(f"layer must be in [0, {len(layers)}) and head in [0, {H}), got {layer}, {head}")
    W = layers[layer].self_attn.o_proj.weight  # (d, H * d_head)
    if directions.dim() != 2 or directions.shape[0] != W.shape[0]:
        raise ValueError(f"directions must be (d={W.shape[0]}, r), got {tuple(directions.shape)}")
    D = torch.linalg.qr(directions.double())[0].to(W)  # orthonormal, whatever the caller passed
    cols = slice(head * (W.shape[1] // H), (head + 1) * (W.shape[1] // H))
    saved = W.data[:, cols].clone()
    with torch.no_grad():
        W[:, cols] -= D @ (D.T @ W[:, cols])
    try:
        yield model
    finally:
        with torch.no_grad():
            W[:, cols] = saved
