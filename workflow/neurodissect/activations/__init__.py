"""Stage `activations`: per-layer activation stores (Zarr v3).

:mod:`.store` defines the store layout shared by layer activations, SAE
latents and CLIP image embeddings; extraction from a model lives beside it.
"""
