"""Stage `sae`: sparse autoencoders on the opaque model's features.

- :mod:`.base` — the SAE interface, variant registry, checkpoints (``load_sae``)
- :mod:`.relu_l1`, :mod:`.topk`, :mod:`.batchtopk`, :mod:`.matryoshka` — the variants
  (one module each, registered by name)
- :mod:`.sparse_ops` — autograd functions that keep sparse codes sparse
- :mod:`.stream` — shuffled mini-batches streamed from an activation store
- :mod:`.train` — the training loop, dead-latent resampling, resume (rule train_sae)
- :mod:`.metrics` — FVU, L0, dead fraction, head fidelity (pure + streaming)
- :mod:`.encode` — latents of every image to a store (rule encode_latents)
- :mod:`.evaluate` — the held-out metrics file (rule evaluate_sae)
- :mod:`.baselines` — identity / PCA / ICA / NMF scored like the SAE (rule sae_baselines)
"""
