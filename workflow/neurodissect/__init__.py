"""neurodissect: dissect medical-image classifiers into human-named concepts.

The package is organised by workflow stage (data, opaque, activations, vocab,
clip, annotate, sae, naming, cav, cbm, evaluate, viz, provenance). Importing
it is cheap: heavy libraries (torch, spacy, open_clip) load inside the stage
modules that need them, so the Snakefile can import helpers at parse time.
"""

__version__ = "0.1.0"
