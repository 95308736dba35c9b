# vrm-bench: VRM against Bradley-Terry and baselines, from raw preference data to tables
# and figures. Run `snakemake --cores all`; add `--configfile FILE` to override the default.

import sys

from vrm.config import validate_config
from vrm.errors import UserError
from vrm.manifest import git_state

configfile: "workflows/config/default.yaml"
report: "workflows/report/workflow.rst"

try:
    validate_config(config)
except UserError as error:
    sys.exit(str(error))

RESULTS = config.get("results_dir", "results")
# "head": heads on frozen, cached features (the laptop run); "finetune": backbone and head train together.
MODE = config.get("mode", "head")
TRAIN_SETS = list(config["train_sets"])
METHODS = [name for name, options in config["methods"].items() if options is not False]
SEEDS = [int(seed) for seed in config["seeds"]]
CUES = config.get("cues") or {}
CUE_NAMES = list(CUES.get("templates", {}))
CUE_RHOS = [repr(float(rho)) for rho in CUES.get("rhos", [])]
CUE_METHODS = [m for m in METHODS if CUES.get("methods") is None or m in CUES["methods"]]
GENERALIZATION = config.get("generalization") or {}
GENERALIZATION_METHODS = [m for m in METHODS if GENERALIZATION and (GENERALIZATION.get("methods") is None or m in GENERALIZATION["methods"])]
# Commit and uncommitted changes of this checkout, for results/manifest.json.
GIT_STATE = git_state(workflow.basedir)
EXPORT = config.get("export") or {}
EXPORT_DIR = EXPORT.get("dir", "results/export")
EXPORT_TRAIN_SET = EXPORT.get("train_set") or TRAIN_SETS[0]
EXPORT_SEED = EXPORT.get("seed", SEEDS[0])
EXPORT_METHODS = [m for m in METHODS if EXPORT and (EXPORT.get("methods") is None or m in EXPORT["methods"])]


def rule_resources(rule_name):
    """Cluster resources of a rule (gpu, mem_mb, runtime, slurm_partition, ...): the config's
    `resources.default`, updated by `resources.<rule name>`."""
    resources = config.get("resources") or {}
    return {**(resources.get("default") or {}), **(resources.get(rule_name) or {})}


include: "workflows/rules/data.smk"
if MODE == "finetune":
    include: "workflows/rules/finetune.smk"
    include: "workflows/rules/export.smk"
else:
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
        rules.plot.output,
        rules.generalization_table.output if GENERALIZATION else [],
        [f"{EXPORT_DIR}/{m}/config.json" for m in EXPORT_METHODS],
