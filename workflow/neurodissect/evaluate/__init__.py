"""Stage `evaluate`: metrics against ground truth and across runs, one submodule per family."""
