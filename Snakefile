# vrm-bench: VRM against Bradley-Terry and baselines, from raw preference data to tables
# and figures. Run `snakemake --cores all`; add `--configfile FILE` to override the default.

import sys

from vrm.config import validate_config
from vrm.errors import UserError

configfile: "workflows/config/default.yaml"

try:
    validate_config(config)
except UserError as error:
    sys.exit(str(error))

RESULTS = config.get("results_dir", "results")
TRAIN_SETS = list(config["train_sets"])
METHODS = [name for name, options in config["methods"].items() if options is not False]
SEEDS = [int(seed) for seed in config["seeds"]]
CUES = config.get("cues") or {}
CUE_NAMES = list(CUES.get("templates", {}))
CUE_RHOS = [repr(float(rho)) for rho in CUES.get("rhos", [])]
CUE_METHODS = [m for m in METHODS if CUES.get("methods") is None or m in CUES["methods"]]
GENERALIZATION = config.get("generalization") or {}
GENERALIZATION_METHODS = [m for m in METHODS if GENERALIZATION and (GENERALIZATION.get("methods") is None or m in GENERALIZATION["methods"])]
STAGE = "workflows/scripts/run_stage.py"


include: "workflows/rules/data.smk"
include: "workflows/rules/features.smk"
include: "workflows/rules/tune.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/cues.smk"
include: "workflows/rules/generalization.smk"
include: "workflows/rules/report.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.figures.output,
        rules.generalization_table.output if GENERALIZATION else [],
