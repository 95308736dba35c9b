# Spurious-cue stress test: each method trained on the cue training set with a cue planted
# on the chosen side at rate rho, then scored on clean and on reversed test pairs.

rule cue_features:
    input:
        pairs=rules.prepare.output.pairs,
        features=rules.features.output.features,
    output:
        features=f"{RESULTS}/features/cue/{{cue}}.safetensors",
        report=f"{RESULTS}/features/cue/{{cue}}.json",
    params:
        config={key: config.get(key) for key in ("backbone", "cache_dir", "cues")},
    threads: workflow.cores
    priority: 20
    resources:
        **rule_resources("cue_features"),
    log:
        f"{RESULTS}/logs/cue_features/{{cue}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cue_features/{{cue}}.tsv"
    script:
        "../scripts/run_stage.py"


rule cue_train:
    input:
        pairs=rules.prepare.output.pairs,
        features=rules.features.output.features,
        cue_features=rules.cue_features.output.features,
        best=lambda wildcards: f"{RESULTS}/tune/{CUES['train_set']}/{wildcards.method}/best_config.yaml",
    output:
        scores=f"{RESULTS}/scores/cue/{{cue}}/rho{{rho}}/{{method}}.parquet",
    params:
        config=lambda wildcards: {
            "cues": CUES,
            "split": config.get("split", {}),
            "training": config["training"],
            "evaluation": config["evaluation"],
            "methods": {wildcards.method: config["methods"][wildcards.method]},
            "plugins": config.get("plugins", []),
        },
        model_root=f"{RESULTS}/models/cue/{{cue}}/rho{{rho}}/{{method}}",
    wildcard_constraints:
        rho=r"[0-9.]+",
    threads: 1
    resources:
        **rule_resources("cue_train"),
    log:
        f"{RESULTS}/logs/cue_train/{{cue}}/rho{{rho}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/cue_train/{{cue}}/rho{{rho}}/{{method}}.tsv"
    script:
        "../scripts/run_stage.py"
