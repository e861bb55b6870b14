"""Du-IN's networks (Zheng et al. 2024, "Du-IN: Discrete units-guided mask modeling for decoding speech from
Intracranial Neural signals", Sec. 3; reference liulab-repository/Du-IN, ``models/duin/duin.py``), small and in
``torch.nn``.

Signals are [B, T, C]: T samples of C channels. Two ways to make tokens (:class:`SignalEmbed`):

- ``region`` (Du-IN): the channels are fused at every sample by one linear map C -> ``d_neural`` (the reference's
  ``SubjectBlock``), the fused signal is cut into segments of ``seg_len`` samples, and each segment becomes one
  token: N = T / seg_len tokens, each a multi-channel (region-level) unit.
- ``channel`` (the univariate baseline the paper argues against, as BrainBERT and LaBraM tokenize): each channel's
  segments are embedded on their own by one shared map, plus a learned channel embedding: N = C * T / seg_len
  tokens, channel-major.

Both add fixed sin-cos time positions (the reference's ``TimeEmbedding(mode="sincos")``) and run pre-norm
transformer blocks (:class:`SignalEncoder`). The tokenizer (:class:`SignalVQVAE`, the reference's ``duin_vqvae``)
quantizes the encoder's tokens with :class:`NormEMAQuantizer` (LaBraM's normalized EMA codebook, the reference's
``LaBraMVectorQuantizer``), decodes them with more blocks and regresses each token's samples back. The masked
model (:class:`MaskedCodeModel`, the reference's ``duin_mae``) is a fresh encoder whose masked tokens are replaced
by a learned mask embedding, with a linear head over the codebook.

Deliberate simplifications (docs/methods_pretraining.md): a segment is embedded by one linear layer, not the
reference's convolution stack; blocks are pre-norm without dropout; one subject, so no per-subject layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TOKENS",
    "SignalEmbed",
    "SignalEncoder",
    "NormEMAQuantizer",
    "SignalVQVAE",
    "MaskedCodeModel",
    "sincos_1d",
    "kmeans_cosine",
]

TOKENS = ("region", "channel")  # Du-IN's region-fused tokens, or one token per channel and segment


def sincos_1d(n: int, dim: int) -> torch.Tensor:
    """[n, dim] fixed sin-cos positions (Vaswani et al. 2017): sines in the first half, cosines in the second."""
    if dim % 2:
        raise ValueError(f"dim must be even for sin-cos positions, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angle = torch.arange(n, dtype=torch.float64)[:, None] * omega  # (n, dim / 2)
    return torch.cat([angle.sin(), angle.cos()], 1).float()


def _blocks(dim: int, heads: int, depth: int) -> nn.ModuleList:
    layer = lambda: nn.TransformerEncoderLayer(  # noqa: E731
        dim, heads, 2 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )  # the reference's d_ff = 2 d_model
    return nn.ModuleList(layer() for _ in range(depth))


class SignalEmbed(nn.Module):
    """``forward(x [B, T, C]) -> tokens [B, N, D]`` (no positions); ``tokens`` is one of :data:`TOKENS`."""

    def __init__(self, tokens: str, channels: int, length: int, seg_len: int, dim: int, d_neural: int = 16):
        super().__init__()
        if tokens not in TOKENS:
            raise ValueError(f"tokens must be one of {TOKENS}, got {tokens!r}")
        if seg_len < 1 or length % seg_len:
            raise ValueError(f"seg_len must divide the trial length {length}, got {seg_len}")
        self.tokens, self.channels, self.length, self.seg_len = tokens, channels, length, seg_len
        self.segments = length // seg_len
        if tokens == "region":
            self.fuse = nn.Linear(channels, d_neural)  # (C -> d_neural) at every sample: the region-level signal
            self.patch = nn.Linear(seg_len * d_neural, dim)
        else:
            self.fuse = None
            self.patch = nn.Linear(seg_len, dim)  # one channel's segment, the same map for every channel
            self.channel = nn.Parameter(torch.randn(channels, dim) * 0.02)  # which channel a token comes from

    @property
    def num_tokens(self) -> int:
        return self.segments if self.tokens == "region" else self.channels * self.segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        if (T, C) != (self.length, self.channels):
            raise ValueError(f"signals must be [B, {self.length}, {self.channels}], got {list(x.shape)}")
        if self.fuse is not None:
            h = self.fuse(x)  # (B, T, d_neural)
            return self.patch(h.reshape(B, self.segments, -1))  # (B, N = T / seg_len, D)
        segs = x.transpose(1, 2).reshape(B, C, self.segments, self.seg_len)  # (B, C, S, seg_len)
        h = self.patch(segs) + self.channel[:, None, :]  # (B, C, S, D)
        return h.reshape(B, C * self.segments, -1)  # (B, N = C * S, D), channel-major

    def positions(self, dim: int) -> torch.Tensor:
        """[N, dim] the time position of every token (a channel token shares its segment's time)."""
        pos = sincos_1d(self.segments, dim)
        return pos if self.tokens == "region" else pos.repeat(self.channels, 1)


class SignalEncoder(nn.Module):
    """Tokens + time positions + ``depth`` pre-norm blocks + LayerNorm: ``forward(x [B, T, C]) -> [B, N, D]``."""

    def __init__(self, embed: SignalEmbed, dim: int, depth: int, heads: int):
        super().__init__()
        self.embed = embed
        self.register_buffer("pos", embed.positions(dim), persistent=False)
        self.blocks = _blocks(dim, heads, depth)
        self.norm = nn.LayerNorm(dim)

    def run(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, D] encoder output of embedded tokens (positions added here)."""
        h = tokens + self.pos
        for block in self.blocks:
            h = block(h)
        return self.norm(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.embed(x))

    @torch.no_grad()
    def features(self, x: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """[B, S * D] probe features: the encoder output per time segment, flattened, as the reference's
        classification head reads ``d_model * emb_len`` features. A channel-token encoder's outputs are averaged
        over channels (``pool="mean"``) or kept per channel (``pool="concat"``: [B, C * S * D])."""
        if pool not in ("mean", "concat"):
            raise ValueError(f"pool must be 'mean' or 'concat', got {pool!r}")
        h = self(x)  # (B, N, D)
        e = self.embed
        if e.tokens == "channel" and pool == "mean":
            h = h.view(h.shape[0], e.channels, e.segments, -1).mean(1)  # (B, S, D)
        return h.flatten(1)


def kmeans_cosine(x: torch.Tensor, k: int, iters: int = 10, seed: int = 0) -> torch.Tensor:
    """[k, d] unit centroids of unit vectors ``x`` [n, d] by spherical k-means (the reference's k-means
    initialisation with ``use_cossim=True``): starts from ``k`` rows drawn by a fixed-seed generator; an empty
    cluster keeps its centroid."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    c = x[torch.randint(len(x), (k,), generator=g).to(x.device)]
    for _ in range(iters):
        assign = (x @ c.T).argmax(1)  # (n,)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)[:, None]
        c = torch.where(counts > 0, F.normalize(sums, dim=-1), c)
    return c


class NormEMAQuantizer(nn.Module):
    """LaBraM's normalized EMA vector quantizer (Du-IN's codebook), ``forward(z [..., D]) -> (z_q [..., D], loss,
    codes [...])``:

      z_e = l2norm(W2 tanh(W1 z))                      (..., code_dim)
      code = argmin_k ||z_e - e_k||^2                  e_k unit vectors (the codebook)
      loss = beta * mse(z_e, sg[e_code])               the commitment term; the codebook gets no gradient
      z_q = post(LayerNorm(z_e + sg[e_code - z_e]))    straight-through, back to D

    In training the codebook moves by EMA: for each used code, ``e_k <- l2norm(decay e_k + (1 - decay)
    l2norm(mean of the z_e assigned to it))`` (unused codes stay), after spherical k-means on the first batch.
    ``restart`` > 0 revives dead codes as the Jukebox quantizer of the Du-IN repository does
    (``JukeBoxVectorQuantizer.update_codex``, ``thres_usage = 1``): a code whose usage (an EMA of its per-batch
    count) falls below ``restart`` moves onto one of the batch's vectors, here the worst-quantized ones (largest
    distance to their code) rather than a random draw, and restarts with the uniform share M / K of the batch's
    M vectors as usage. The codebook, the usage and the initialisation flag are buffers, saved with the model."""

    def __init__(
        self, dim: int, codebook_size: int, code_dim: int, beta: float = 1.0, decay: float = 0.99, restart: float = 0.0
    ):
        super().__init__()
        if isinstance(codebook_size, bool) or not isinstance(codebook_size, int) or codebook_size < 2:
            raise ValueError(
                f"codebook_size must be an int >= 2 (one code carries no information), got {codebook_size!r}"
            )
        if not 0.0 <= decay < 1.0 or beta < 0 or restart < 0:
            raise ValueError(f"need decay in [0, 1), beta >= 0 and restart >= 0, got {decay}, {beta}, {restart}")
        self.codebook_size, self.beta, self.decay, self.restart = codebook_size, beta, decay, restart
        self.pre = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, code_dim))
        self.norm = nn.LayerNorm(code_dim)
        self.post = nn.Linear(code_dim, dim)
        self.register_buffer("codebook", F.normalize(torch.randn(codebook_size, code_dim), dim=-1))
        self.register_buffer("usage", torch.zeros(codebook_size))  # EMA of each code's per-batch count
        self.register_buffer("initted", torch.zeros((), dtype=torch.bool))

    def encode(self, z: torch.Tensor) -> torch.Tensor:
        """[..., code_dim] the unit vectors that are quantized."""
        return F.normalize(self.pre(z), dim=-1)

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """[...] the index of the nearest code of each unit vector (ties: the lowest index)."""
        d = z_e.pow(2).sum(-1, keepdim=True) - 2 * z_e @ self.codebook.T + self.codebook.pow(2).sum(-1)
        return d.argmin(-1)

    @torch.no_grad()
    def _ema(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        counts = torch.bincount(codes, minlength=self.codebook_size)[:, None]  # (K, 1)
        sums = torch.zeros_like(self.codebook).index_add_(0, codes, flat)
        means = F.normalize(sums / counts.clamp(min=1), dim=-1)
        moved = F.normalize(self.decay * self.codebook + (1 - self.decay) * means, dim=-1)
        self.codebook.copy_(torch.where(counts > 0, moved, self.codebook))
        self.usage.mul_(self.decay).add_((1 - self.decay) * counts[:, 0].float())
        if self.restart > 0:
            self._revive(flat, codes)

    @torch.no_grad()
    def _revive(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        """Move the dead codes onto the batch's worst-quantized vectors (farthest from their codes first)."""
        dead = torch.nonzero(self.usage < self.restart).flatten()[: len(flat)]
        if len(dead) == 0:
            return
        error = (flat - self.codebook[codes]).pow(2).sum(-1)  # (M,) squared distance to the assigned code
        worst = error.argsort(descending=True, stable=True)[: len(dead)]
        self.codebook[dead] = flat[worst]
        self.usage[dead] = len(flat) / self.codebook_size  # the uniform share M / K

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_e = self.encode(z)  # (..., code_dim)
        flat = z_e.reshape(-1, z_e.shape[-1])
        if self.training and not bool(self.initted):
            self.codebook.copy_(kmeans_cosine(flat.detach(), self.codebook_size))
            self.usage.fill_(len(flat) / self.codebook_size)  # every code starts with the uniform share
            self.initted.fill_(True)
        codes = self.nearest(z_e)  # (...)
        e = self.codebook[codes]  # (..., code_dim)
        loss = self.beta * F.mse_loss(z_e, e)  # commitment: z_e towards its (fixed) code
        if self.training:
            self._ema(flat.detach(), codes.reshape(-1))
        z_q = z_e + (e - z_e).detach()  # straight-through estimator
        return self.post(self.norm(z_q)), loss, codes


class SignalVQVAE(nn.Module):
    """The neural tokenizer: ``forward(x [B, T, C]) -> (loss, recon MSE, vq loss, codes [B, N])``;
    :meth:`codes` gives the discrete units alone (no decoder)."""

    def __init__(self, encoder: SignalEncoder, quantizer: NormEMAQuantizer, dim: int, depth: int, heads: int):
        super().__init__()
        self.encoder, self.quantizer = encoder, quantizer
        self.blocks = _blocks(dim, heads, depth)
        self.norm = nn.LayerNorm(dim)
        e = encoder.embed
        self.head = nn.Linear(dim, e.seg_len * (e.channels if e.tokens == "region" else 1))  # a token's samples

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """[B, T, C] signals from quantized tokens [B, N, D]."""
        h = z_q + self.encoder.pos  # the reference's decoder adds the time embedding again
        for block in self.blocks:
            h = block(h)
        y = self.head(self.norm(h))  # (B, N, samples per token)
        e, B = self.encoder.embed, z_q.shape[0]
        if e.tokens == "region":
            return y.view(B, e.segments, e.seg_len, e.channels).reshape(B, e.length, e.channels)
        return y.view(B, e.channels, e.length).transpose(1, 2)

    def forward(self, x: torch.Tensor):
        z_q, vq_loss, codes = self.quantizer(self.encoder(x))
        recon = F.mse_loss(self.decode(z_q), x)
        return recon + vq_loss, recon, vq_loss, codes

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """[B, N] the code of every token (the targets of masked code prediction)."""
        return self.quantizer.nearest(self.quantizer.encode(self.encoder(x)))


class MaskedCodeModel(nn.Module):
    """Du-IN's masked code prediction network: ``forward(x [B, T, C], mask [B, N]) -> logits [B, N, K]``, with
    the masked tokens' embeddings replaced by a learned mask embedding before the positions (reference
    ``duin_mae``: ``E_init * (1 - mask) + mask_emb * mask``, then the encoder)."""

    def __init__(self, encoder: SignalEncoder, dim: int, codebook_size: int):
        super().__init__()
        self.encoder = encoder
        self.mask_emb = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.mask_emb, std=0.02)  # the reference's initialisation
        self.head = nn.Linear(dim, codebook_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.embed(x)  # (B, N, D)
        if mask.shape != tokens.shape[:2]:
            raise ValueError(f"mask must be [B, N] = {list(tokens.shape[:2])}, got {list(mask.shape)}")
        tokens = torch.where(mask[..., None], self.mask_emb.to(tokens.dtype), tokens)
        return self.head(self.encoder.run(tokens))  # (B, N, K)
