"""A tiny CLIP checkpoint (random weights, both towers, a real byte-level BPE tokenizer) saved like a hub snapshot.

The hub is unreachable here, so tests build a transformers ``CLIPModel`` from a config with tiny towers and
train its tokenizer on the texts it will see (place names, prompts, captions); the folder then loads
through the same code path as ``hf:openai/clip-vit-base-patch32`` does from the Hugging Face cache.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<|startoftext|>", "<|endoftext|>"]


def corpus() -> list[str]:
    """Texts the tokenizer learns from: the shipped prompts filled with country names, and caption words."""
    from geoscout.places.countries import country_label_points

    names = country_label_points()["name"].tolist()
    words = [
        "A Street View photo in",
        "A photo taken in",
        "A street in",
        "A road in",
        "A photo of a landscape in",
        "A Street View photo close to",
        "in the region of",
        "The climate is temperate oceanic. The climate is hot desert. Taken in January February March April May "
        "June July August September October November December.",
    ]
    return words + [f"A Street View photo in {n}." for n in names]


def build_tiny_clip(target: Path, *, seed: int = 0, vocab_size: int = 600) -> Path:
    """Write a tiny CLIP (vision 32 px / 8 px patches, 2 layers, 16-d projection) with its tokenizer to ``target``."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus(),
        trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    bos, eos = tok.token_to_id(SPECIALS[0]), tok.token_to_id(SPECIALS[1])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SPECIALS[0]} $A {SPECIALS[1]}", special_tokens=[(SPECIALS[0], bos), (SPECIALS[1], eos)]
    )
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIALS[0], eos_token=SPECIALS[1], pad_token=SPECIALS[1], model_max_length=77
    )
    torch.manual_seed(seed)
    cfg = transformers.CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "vocab_size": tok.get_vocab_size(),
            "max_position_embeddings": 77,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "pad_token_id": eos,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    target.mkdir(parents=True, exist_ok=True)
    transformers.CLIPModel(cfg).eval().save_pretrained(target)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        target
    )
    fast.save_pretrained(target)
    return target
