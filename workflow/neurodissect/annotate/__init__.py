"""Stage `annotate`: name every unit (layer neuron or SAE latent) from its exemplar images.

:mod:`.exemplars` picks each unit's exemplars with MAMMI's adaptive threshold, streaming a
unit-activation store with a running top-k per unit; :mod:`.matching` scores the exemplar
sets against a vocabulary (template-debiased MAMMI sum, or CLIP-Dissect's soft-WPMI) and
applies the α-cut; :mod:`.confidence` attaches permutation p-values and bootstrap
stability (reusable by any namer); :mod:`.localization` scores units' spatial maps against
bounding boxes. Rule entry points: ``select_exemplars``, ``match_concepts``.
"""
