"""Stage `clip`: the image–text model the annotation and naming stages embed with.

- :func:`load_clip` ``(model_dir) -> (model, preprocess, tokenizer)`` loads the
  open_clip local-dir at ``results/{dataset}/clip/model/`` (:mod:`.model`);
- :func:`encode_texts` ``(model, tokenizer, texts, batch_size) -> (N, D)`` float32
  L2-normalised embeddings, so evaluation code can embed extra strings (class
  names) in the same space as ``text_emb.zarr``.

Rules: train_clip (:mod:`.train`) or load_clip (:mod:`.load`), embed_images and
embed_texts (:mod:`.embed`).
"""

from .encode import encode_texts, l2_normalise
from .model import load_clip, model_info

__all__ = ["encode_texts", "l2_normalise", "load_clip", "model_info"]
