"""Stage `data`: synthetic generators, dataset adapters, the manifest.

Everything downstream reads a dataset through :mod:`neurodissect.data.manifest`.
"""
