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
STAGE = "workflows/scripts/run_stage.py"


include: "workflows/rules/data.smk"
include: "workflows/rules/features.smk"
include: "workflows/rules/tune.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/report.smk"


rule all:
    input:
        f"{RESULTS}/tables/main.csv",
        f"{RESULTS}/tables/main.md",
        f"{RESULTS}/tables/comparisons.csv",
        f"{RESULTS}/figures/main.png",
        f"{RESULTS}/figures/main.pdf",
