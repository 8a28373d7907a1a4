"""Tiny randomly initialised image-text models in the exact layouts they are published in.

- :func:`open_clip_hub_repo`: an open_clip Hugging Face Hub repo (``open_clip_config.json``
  + ``open_clip_pytorch_model.bin``) whose text tower is a Hugging Face BERT named by
  repo id, as BiomedCLIP's is PubMedBERT, and whose image tower is a timm ViT; both repos are written into a Hugging Face
  hub cache (``models--ORG--NAME/snapshots/<rev>/``, ``refs/main``), so open_clip,
  huggingface_hub and transformers read them with ``HF_HUB_OFFLINE=1``.
- :func:`transformers_clip_folder`: a ``CLIPModel`` + ``CLIPProcessor`` written by
  ``save_pretrained`` (what ``clip.path`` of ``clip.source: transformers`` points to).

Only the sizes are tiny; file names, config keys and tokenizers are the real ones.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

HUB_REPO = "tiny-org/tiny-biomedclip"
BERT_REPO = "tiny-org/tiny-pubmedbert"
HUB_REV = "2" * 40
BERT_REV = "1" * 40


def hub_snapshot(cache: Path, repo: str, rev: str) -> Path:
    """The snapshot folder of ``repo`` at ``rev`` in a hub cache, ``refs/main`` → rev."""
    base = cache / ("models--" + repo.replace("/", "--"))
    snap = base / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(rev)
    return snap


def write_tiny_bert(folder: Path) -> None:
    """A one-layer BERT config and a WordPiece tokenizer (vocab.txt) in ``folder``."""
    from transformers import BertConfig, BertTokenizer

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *string.ascii_lowercase,
        *(f"##{c}" for c in string.ascii_lowercase),
        "a",
        "photo",
        "of",
        ".",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    ).save_pretrained(folder)


def open_clip_hub_repo(cache: Path, seed: int = 0) -> Path:
    """BiomedCLIP's layout in miniature; returns the snapshot folder of :data:`HUB_REPO`."""
    from open_clip.model import CustomTextCLIP

    bert_dir = hub_snapshot(cache, BERT_REPO, BERT_REV)
    write_tiny_bert(bert_dir)
    # the keys BiomedCLIP's open_clip_config.json uses for its PubMedBERT tower
    text_cfg = {
        "hf_model_name": BERT_REPO,
        "hf_tokenizer_name": BERT_REPO,
        "hf_proj_type": "mlp",
        "hf_pooler_type": "cls_last_hidden_state_pooler",
        "context_length": 64,
    }
    # and its timm ViT image tower (vit_base_patch16_224 there; timm's 160-px test ViT here)
    vision_cfg = {
        "timm_model_name": "test_vit",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "linear",
        "image_size": 160,
    }
    model_cfg = {"embed_dim": 16, "text_cfg": text_cfg, "vision_cfg": vision_cfg}
    torch.manual_seed(seed)
    build_text = {**text_cfg, "hf_model_name": str(bert_dir), "hf_model_pretrained": False}
    model = CustomTextCLIP(**json.loads(json.dumps({**model_cfg, "text_cfg": build_text})))
    snap = hub_snapshot(cache, HUB_REPO, HUB_REV)
    preprocess = {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    (snap / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    torch.save(model.state_dict(), snap / "open_clip_pytorch_model.bin")
    return snap


def transformers_clip_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` and its processor (BPE tokenizer, image processor) saved
    with ``save_pretrained`` into ``folder``."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    vocab = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters), ".</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": 32,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 1,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder
