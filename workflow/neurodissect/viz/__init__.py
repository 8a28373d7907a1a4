"""Stage `viz`: matplotlib figures, one submodule per stage (Agg backend, no display needed)."""
