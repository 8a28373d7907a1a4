"""Stage `naming`: a human name for every SAE latent, with calibrated confidence.

Three namers write the same table (:mod:`.table`): ``reports`` (log-odds of
vocabulary phrases in the exemplars' reports vs the corpus, :mod:`.reports`),
``clip`` (exemplar images matched to the vocabulary, :mod:`.clip`) and ``llm``
(an OpenAI-compatible endpoint reads the exemplars' reports, :mod:`.llm`).
:mod:`.assess` attaches the permutation p-value and bootstrap stability of each
name; :mod:`.run` is the rule's entry point.
"""
