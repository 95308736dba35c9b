"""Entry point of every rule: set up the rule's log, then call its stage in vrm.pipeline."""

from vrm.pipeline import run_rule

run_rule(snakemake)  # noqa: F821 (injected by Snakemake)
