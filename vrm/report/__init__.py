"""Tables and figures built from the per-seed scores."""
