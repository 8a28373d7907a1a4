"""Stage `cbm`: concept selection and the concept bottleneck model.

- :mod:`.omp` — batched orthogonal matching pursuit from the Gram matrix
  (all images at once; equal to scikit-learn's ``orthogonal_mp`` per image)
- :mod:`.selection` — duplicate merging, class relevance and lazy-greedy facility
  location on CAV similarity (rule ``select_concepts``)
- :mod:`.model` — concept scores, the logistic-regression head on them and the
  ``model.npz`` format (rule ``build_cbm``)

The CAVs themselves are :mod:`neurodissect.cav`; evaluation and explanations are
:mod:`neurodissect.evaluate.cbm`.
"""
