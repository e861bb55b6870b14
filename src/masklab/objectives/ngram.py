"""ERNIE-Gram: explicitly n-gram masked language modelling (Xiao et al. 2021, Sec. 3).

Each masked n-gram becomes ONE [MASK] in the input (the explicitly masked sequence z-bar_\\M of Eq. 4, built by
:func:`masklab.corrupt.ngram.ngram_mask` with ``collapse=True``; every token keeps its original position id), and
is predicted as one identity y in V_F u V_N: a single token from the model's own MLM head, an n-gram (n >= 2) from
a V_N head over the n-gram lexicon (:class:`masklab.corrupt.ngram.NgramLexicon`). The coarse logits are the two
heads' logits side by side, ``[V | |V_N|]``, and an n-gram's target is ``V + its lexicon id``.

``mode="explicit"``: Eq. 4, -sum_y log p(y | z-bar_\\M), coarse prediction only.

``mode="comprehensive"`` (the default): Eq. 5, coarse plus fine-grained prediction from the same context,
-sum_y log p(y | z-bar_\\M) - sum_z sum_x log p(x | z-bar_\\M). As in the paper's Fig. 3, one mask query per
token of every masked n-gram is appended after the context (with the token's original position id), and the
attention mask keeps the two streams apart: a context token sees only the context, a fine query sees the context
and itself, so no prediction sees what another predicts. The mask is a masklab attention mask
(:func:`two_stream_mask`, compiled by :func:`masklab.attention.compile.to_dense`).

``generator``: the paper's enhanced n-gram relation modelling (Fig. 4): a small generator, trained with explicit
n-gram MLM on z-bar_\\M, samples an identity in V_F u V_N for every masked n-gram (keyed, as ELECTRA's
:func:`masklab.corrupt.replace.sample_replacements`); the main model reads those samples in place of the
[MASK] symbols (z-bar'_\\M), recovers the original n-grams in both granularities, and detects which slots were
replaced (an RTD head, weight ``rtd_weight``). A sampled n-gram is embedded by its row of the main model's V_N
head (input and output n-gram embeddings tied, as BERT ties its token embeddings).

Loss: mean coarse CE over the masked n-grams plus mean fine CE over their tokens (plus the generator's coarse CE
and ``rtd_weight`` times the RTD loss). Shapes are fixed per batch so that compute is known in advance
(:meth:`ErnieGram.flop_groups`): the context keeps ``L`` columns, and at most ``max_predictions`` tokens per row
are masked (so at most that many n-grams and fine queries).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from masklab.attention.compile import to_dense
from masklab.attention.mods import MaskFn, and_masks, or_masks, padding
from masklab.corrupt.ngram import NgramLexicon, ngram_mask
from masklab.corrupt.record import IGNORE_INDEX
from masklab.corrupt.replace import METHODS, sample_replacements
from masklab.data.tokenizers import TokenInfo
from masklab.objectives.base import Objective, logits_of

__all__ = ["ErnieGram", "MODES", "two_stream_mask", "coarse_targets"]

MODES = ("comprehensive", "explicit")  # Eq. 5 (coarse + fine-grained) or Eq. 4 (coarse only)
HEADS_FILE = "ernie_gram_heads.safetensors"  # V_N head(s), RTD head and the lexicon, beside the model


def _itself() -> MaskFn:
    def mask(b, h, q_idx, kv_idx):
        return q_idx == kv_idx

    mask.__name__ = mask.__qualname__ = "itself"
    return mask


def two_stream_mask(context_lengths: torch.Tensor) -> MaskFn:
    """ERNIE-Gram's attention mask (Fig. 3b) for ``[context (L) | fine queries (F)]`` rows: a key is visible when
    it is a real context token (``kv < context_lengths[b]``; the context is left-aligned) or the query itself.
    Context tokens thus never see the fine queries, and a fine query sees the context and only itself."""
    return or_masks(padding(context_lengths), _itself())


def _positional_window(position_ids: torch.Tensor, window: int) -> MaskFn:
    """HF's bidirectional sliding window (``|i - j| <= window``) on the tokens' position ids, not on columns."""

    def mask(b, h, q_idx, kv_idx):
        pos = position_ids.to(q_idx.device)
        return (pos[b, q_idx] - pos[b, kv_idx]).abs() <= window

    mask.__name__ = mask.__qualname__ = f"positional_window_{window}"
    return mask


def coarse_targets(corruption, vocab_size: int) -> torch.Tensor:
    """[B, L'] identity in V_F u V_N of each masked unit of a collapsed :class:`NgramCorruption`: the token for a
    single token, ``vocab_size + lexicon id`` for an n-gram; IGNORE_INDEX elsewhere."""
    ngram = corruption.ngram_targets
    return torch.where(ngram >= 0, vocab_size + ngram, corruption.targets)


def _compact(valid: torch.Tensor, width: int, *values: tuple[torch.Tensor, int]) -> list[torch.Tensor]:
    """Move the entries of each row where ``valid`` [B, N] holds to the left of ``width`` columns (in order);
    each (tensor [B, N], fill) comes back as [B, width] with ``fill`` after them, then ``valid`` itself."""
    B = valid.shape[0]
    dest = torch.where(valid, valid.long().cumsum(1) - 1, torch.full_like(valid, width, dtype=torch.long))
    dest = dest.clamp(max=width)  # entries past ``width`` are dropped (the callers' caps keep them within it)
    out = []
    for x, fill in (*values, (valid, False)):
        buf = torch.full((B, width + 1), fill, dtype=x.dtype, device=x.device)
        out.append(buf.scatter_(1, dest, x)[:, :width])  # column ``width`` collects the entries left out
    return out


def _run(model: nn.Module, **inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [B, N, V], features [B, N, H]): the model's output and the input of its output embedding (the
    hidden state after the MLM head's transform, which the V_N and RTD heads read as well)."""
    box = {}

    def keep(module, args, out) -> None:  # returns None: the output is left as it is
        box["x"] = args[0]

    hook = model.get_output_embeddings().register_forward_hook(keep)
    try:
        logits = logits_of(model(**inputs))
    finally:
        hook.remove()
    return logits, box["x"]


class ErnieGram(Objective):
    """ERNIE-Gram around a masked LM ``model`` (see the module docstring). The lexicon (and with it the V_N
    head) is set by :meth:`set_lexicon` once it is built from the training data."""

    name = "ernie-gram"
    seq_len = 128  # the training rows' length L, set by the recipe (flop_groups counts per L tokens)

    def __init__(
        self,
        model: nn.Module,
        info: TokenInfo,
        *,
        prob: float = 0.15,
        mode: str = "comprehensive",
        max_predictions: int = 20,
        generator: nn.Module | None = None,
        rtd_weight: float = 1.0,
        sampling: str = "multinomial",
        temperature: float = 1.0,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if isinstance(max_predictions, bool) or not isinstance(max_predictions, int) or max_predictions < 1:
            raise ValueError(f"max_predictions must be a positive int, got {max_predictions!r}")
        if sampling not in METHODS:
            raise ValueError(f"sampling must be one of {METHODS}, got {sampling!r}")
        if not temperature > 0 or rtd_weight < 0:
            raise ValueError(f"temperature must be > 0 and rtd_weight >= 0, got {temperature} and {rtd_weight}")
        impl = getattr(model.config, "_attn_implementation", "sdpa")
        if impl not in ("sdpa", "eager"):
            raise ValueError(f"ERNIE-Gram passes a dense attention mask: the model needs sdpa or eager, not {impl}")
        super().__init__(model)
        self.info, self.prob, self.mode, self.max_predictions = info, prob, mode, max_predictions
        self.generator, self.rtd_weight, self.sampling, self.temperature = generator, rtd_weight, sampling, temperature
        self.lexicon: NgramLexicon | None = None
        self.heads = nn.ModuleDict()

    # ------------------------------------------------------------------------------------------ set up
    def set_lexicon(self, lexicon: NgramLexicon) -> None:
        """Use ``lexicon`` as V_N and create the heads it sizes (initialised from the global RNG: seed it)."""
        self.lexicon = lexicon
        hidden = self.model.get_output_embeddings().in_features
        dev = self.model.get_output_embeddings().weight.device
        self.heads["ngram"] = nn.Linear(hidden, len(lexicon), device=dev)  # V_N output (and input) embeddings
        if self.generator is not None:
            g_hidden = self.generator.get_output_embeddings().in_features
            self.heads["gen_ngram"] = nn.Linear(g_hidden, len(lexicon), device=dev)
            self.heads["rtd"] = nn.Linear(hidden, 1, device=dev)  # replaced (1) or original (0) per context token

    def flop_groups(self):
        """(parameters, share of a row's L tokens they process) for :mod:`masklab.compare.flops`: the model reads
        the context plus (comprehensive) ``max_predictions`` fine queries; V_N heads read ``max_predictions``
        slots; the generator and the RTD head read the context."""
        from masklab.compare.flops import matmul_params

        L = self.seq_len
        fine = self.max_predictions if self.mode == "comprehensive" else 0
        slots = self.max_predictions / L
        groups = [(matmul_params(self.model), (L + fine) / L), (list(self.heads["ngram"].parameters()), slots)]
        if self.generator is not None:
            groups += [
                (matmul_params(self.generator), 1.0),
                (list(self.heads["gen_ngram"].parameters()), slots),
                (list(self.heads["rtd"].parameters()), 1.0),
            ]
        return groups

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, batch, keys, **_):
        if self.lexicon is None:
            raise ValueError("ErnieGram needs its n-gram lexicon: call set_lexicon(NgramLexicon.build(...)) first")
        info, V, P = self.info, self.info.vocab_size, self.max_predictions
        B, L = batch.shape
        c = ngram_mask(
            batch, keys, self.lexicon, mask_id=info.mask_id, vocab_size=V, special_ids=info.special_ids,
            prob=self.prob, collapse=True, pad_id=info.pad_id, max_tokens=P, length=L,
        )  # fmt: skip
        context_len = c.attention_mask.sum(1)  # (B,) real tokens of the explicitly masked rows (left-aligned)
        context_pos = c.source.clamp(min=0)  # (B, L) original positions
        pos = torch.arange(L, device=batch.device).expand(B, L)
        # the masked n-grams of each row, left-aligned in P slots: position in the context and coarse identity
        slot_at, slot_y, slot_ok = _compact(c.mask, P, (pos, 0), (coarse_targets(c, V), IGNORE_INDEX))
        metrics, loss = {}, 0.0
        inputs_embeds = None
        if self.generator is not None:
            g_loss, sampled = self._generate(c.inputs, context_pos, context_len, slot_at, slot_y, slot_ok, keys)
            inputs_embeds, replaced = self._embed_samples(c.inputs, slot_at, slot_y, sampled, slot_ok)
            loss = g_loss
            metrics["gen_ce"] = g_loss.detach()
        fine_ids, fine_pos, fine_y = self._fine_stream(c, slot_at, slot_ok)
        ids = torch.cat([c.inputs, fine_ids], 1)  # (B, L + F)
        position_ids = torch.cat([context_pos, fine_pos], 1)
        if inputs_embeds is not None and fine_ids.shape[1]:
            fine_embeds = self.model.get_input_embeddings()(fine_ids)
            inputs_embeds = torch.cat([inputs_embeds, fine_embeds.to(inputs_embeds.dtype)], 1)
        logits, feats = self._forward(self.model, ids, position_ids, context_len, inputs_embeds)
        coarse = self._coarse_logits(logits, feats, slot_at, self.heads["ngram"])  # (B, P, V + |V_N|)
        coarse_ce = F.cross_entropy(coarse.flatten(0, 1).float(), slot_y.flatten(), ignore_index=IGNORE_INDEX)
        loss = loss + coarse_ce
        metrics.update(self._coarse_metrics(coarse, slot_y, slot_ok, coarse_ce))
        if fine_ids.shape[1]:
            fine_logits = logits[:, L:]  # (B, F, V)
            fine_ce = F.cross_entropy(fine_logits.flatten(0, 1).float(), fine_y.flatten(), ignore_index=IGNORE_INDEX)
            loss = loss + fine_ce
            hit = (fine_logits.argmax(-1) == fine_y) & (fine_y != IGNORE_INDEX)
            metrics["fine_ce"] = fine_ce.detach()
            metrics["masked_acc"] = (hit.sum() / (fine_y != IGNORE_INDEX).sum().clamp(min=1)).detach()
            metrics["bits"] = fine_ce.detach() / math.log(2)
        if self.generator is not None:
            rtd = self._rtd_loss(feats[:, :L], replaced, c.attention_mask.bool())
            loss = loss + self.rtd_weight * rtd
            metrics["rtd_loss"] = rtd.detach()
            metrics["replaced_frac"] = (replaced.sum() / slot_ok.sum().clamp(min=1)).detach()
        metrics["mask_frac"] = (c.fine_targets != IGNORE_INDEX).sum().div(batch.numel()).detach()
        return loss, metrics

    def _forward(self, model, ids, position_ids, context_len, inputs_embeds=None):
        """(logits, features) of ``model`` on ``[context | fine queries]`` under :func:`two_stream_mask`."""
        B, N = ids.shape
        base = two_stream_mask(context_len)
        mask = self._layer_masks(model, base, position_ids, N, B, ids.device)
        inputs = {"inputs_embeds": inputs_embeds} if inputs_embeds is not None else {"input_ids": ids}
        return _run(model, attention_mask=mask, position_ids=position_ids, **inputs)

    @staticmethod
    def _layer_masks(model, base: MaskFn, position_ids, N: int, B: int, device):
        """The 4-D bool mask (B, 1, N, N) for the model, or per attention kind when it has sliding layers
        (ModernBERT's local attention, as a window on the original positions)."""
        dense = to_dense(base, N, N, batch=B, device=device)
        if getattr(model.config, "_attn_implementation", "sdpa") == "eager":
            dense = torch.where(dense, 0.0, torch.finfo(model.dtype).min).to(model.dtype)
        kinds = set(getattr(model.config, "layer_types", None) or ())
        if "sliding_attention" not in kinds:
            return dense
        window = and_masks(base, _positional_window(position_ids, int(model.config.sliding_window)))
        local = to_dense(window, N, N, batch=B, device=device)
        if dense.dtype != torch.bool:
            local = torch.where(local, 0.0, torch.finfo(model.dtype).min).to(model.dtype)
        return {"full_attention": dense, "sliding_attention": local}

    def _fine_stream(self, c, slot_at, slot_ok):
        """(ids, position ids, targets) [B, F] of the fine queries: one [MASK] per token of each masked n-gram,
        at the token's original position (F = max_predictions; none in explicit mode)."""
        B, P = slot_at.shape
        if self.mode == "explicit":
            empty = slot_at[:, :0]
            return empty, empty, empty
        fine = c.fine_targets.gather(1, slot_at[..., None].expand(-1, -1, c.fine_targets.shape[2]))  # (B, P, n)
        fine = torch.where(slot_ok[..., None], fine, torch.full_like(fine, IGNORE_INDEX))
        start = c.source.gather(1, slot_at).clamp(min=0)  # (B, P) original position of each n-gram's first token
        where = start[..., None] + torch.arange(fine.shape[2], device=fine.device)  # (B, P, n)
        real = fine != IGNORE_INDEX
        fine_pos, fine_y, _ = _compact(real.flatten(1), P, (where.flatten(1), 0), (fine.flatten(1), IGNORE_INDEX))
        fine_ids = torch.where(fine_y != IGNORE_INDEX, self.info.mask_id, self.info.pad_id)
        return fine_ids, fine_pos, fine_y

    def _coarse_logits(self, logits, feats, slot_at, ngram_head):
        """[B, P, V + |V_N|]: the MLM head's and the V_N head's logits at each masked n-gram's [MASK]."""
        at = slot_at[..., None]
        tokens = logits.gather(1, at.expand(-1, -1, logits.shape[2]))
        ngrams = ngram_head(feats.gather(1, at.expand(-1, -1, feats.shape[2])))
        return torch.cat([tokens, ngrams.to(tokens.dtype)], -1)

    def _coarse_metrics(self, coarse, slot_y, slot_ok, coarse_ce) -> dict:
        hit = (coarse.argmax(-1) == slot_y) & slot_ok
        multi = slot_ok & (slot_y >= self.info.vocab_size)
        return {
            "coarse_ce": coarse_ce.detach(),
            "coarse_acc": (hit.sum() / slot_ok.sum().clamp(min=1)).detach(),
            "ngram_acc": ((hit & multi).sum() / multi.sum().clamp(min=1)).detach(),
            "ngram_share": (multi.sum() / slot_ok.sum().clamp(min=1)).detach(),
        }

    # ------------------------------------------------------------------------------------------ generator
    def _generate(self, ids, position_ids, context_len, slot_at, slot_y, slot_ok, keys):
        """The generator's explicit n-gram MLM loss on z-bar_\\M and its keyed samples [B, P] in V_F u V_N."""
        logits, feats = self._forward(self.generator, ids, position_ids, context_len)
        coarse = self._coarse_logits(logits, feats, slot_at, self.heads["gen_ngram"])
        g_loss = F.cross_entropy(coarse.flatten(0, 1).float(), slot_y.flatten(), ignore_index=IGNORE_INDEX)
        sampled = sample_replacements(
            coarse, slot_y.clamp(min=0), slot_ok, keys, method=self.sampling, temperature=self.temperature,
            banned=self.info.special_ids,
        )  # fmt: skip
        return g_loss, sampled

    def _embed_samples(self, ids, slot_at, slot_y, sampled, slot_ok):
        """(inputs_embeds [B, L, H], replaced [B, L]): z-bar'_\\M, the context with each [MASK] slot holding the
        sampled identity (a token's embedding, or the n-gram's row of the V_N head), and 1.0 at the slots whose
        sample differs from the original identity (the RTD labels; a sample equal to the original is original)."""
        B, L = ids.shape
        V = self.info.vocab_size
        dest = torch.where(slot_ok, slot_at, L)  # unused slots go to a scratch column
        union = torch.full((B, L + 1), -1, dtype=ids.dtype, device=ids.device)
        union = union.scatter_(1, dest, torch.where(slot_ok, sampled, -1))[:, :L]  # (B, L) sampled identity or -1
        replaced = torch.zeros((B, L + 1), device=ids.device).scatter_(1, dest, (slot_ok & (sampled != slot_y)).float())
        embeds = self.model.get_input_embeddings()(torch.where((union >= 0) & (union < V), union, ids))
        table = self.heads["ngram"].weight  # (|V_N|, H): the V_N output embeddings, read as input embeddings
        ngram = table[(union - V).clamp(min=0, max=table.shape[0] - 1)].to(embeds.dtype)
        return torch.where((union >= V)[..., None], ngram, embeds), replaced[:, :L]

    def _rtd_loss(self, feats, replaced, real):
        """Replaced token detection on the context (enhanced relation modelling): the RTD head's BCE over the
        real tokens."""
        logit = self.heads["rtd"](feats)[..., 0].float()  # (B, L)
        return F.binary_cross_entropy_with_logits(logit[real], replaced[real])

    # ------------------------------------------------------------------------------------------ checkpoints
    def save_model(self, path: Path) -> None:
        """The masked LM as a plain HF folder (what every command reads), the heads and the lexicon beside it in
        ``ernie_gram_heads.safetensors``, the generator in ``generator/``."""
        super().save_model(path)
        state = {f"heads.{k}": v.detach().contiguous() for k, v in self.heads.state_dict().items()}
        if self.lexicon is not None:
            state.update({"lexicon.tokens": self.lexicon.tokens, "lexicon.n": self.lexicon.n,
                          "lexicon.score": self.lexicon.score.float()})  # fmt: skip
        save_file({k: v.cpu().contiguous() for k, v in state.items()}, Path(path) / HEADS_FILE)
        if self.generator is not None:
            self.generator.save_pretrained(Path(path) / "generator", safe_serialization=True)

    def load_model(self, path: Path) -> None:
        super().load_model(path)
        state = load_file(Path(path) / HEADS_FILE, device=str(self.device))
        if self.lexicon is not None and not torch.equal(state["lexicon.tokens"].cpu(), self.lexicon.tokens.cpu()):
            raise ValueError(f"checkpoint {path} was trained with another n-gram lexicon than the recipe builds")
        heads = {k.removeprefix("heads."): v for k, v in state.items() if k.startswith("heads.")}
        missing, unexpected = self.heads.load_state_dict(heads, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"checkpoint {path} does not match the heads: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        if self.generator is not None:
            g = load_file(Path(path) / "generator" / "model.safetensors", device=str(self.device))
            missing, unexpected = self.generator.load_state_dict(g, strict=False)
            missing = [k for k in missing if not k.endswith("decoder.weight")]
            if missing or unexpected:
                raise ValueError(
                    f"generator in {path} does not match: missing {missing[:3]}, unexpected {unexpected[:3]}"
                )
