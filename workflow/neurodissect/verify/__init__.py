"""verify_names: names checked by intervention on synthetic data.

For every named unit (a layer's neurons, or SAE latents) whose name is a planted
concept or one of its synonyms, probe images are rendered twice, with and without
that concept and otherwise identical (:mod:`..data.synth.counterfactual`), and the
unit's response to each pair is compared: a name is *confirmed* when the unit responds
more with the concept than without it, significantly over the pairs. Names that are
not planted concepts cannot be checked this way: they are *unverifiable*, not failures.

- :mod:`.stats`: paired AUROC, effect, Wilcoxon signed-rank p-value of response pairs
- :mod:`.probe`: probe pairs rendered in batches, unit responses of the opaque model /
  SAE latents
- :mod:`.run`: the rule entry point (table, metrics, figure)
"""

from .run import VerifyParams, verify_names

__all__ = ["VerifyParams", "verify_names"]
