# Generalization: every method trained on nested subsets of one training set, each model
# certified with PAC-Bayes bounds beside its measured gap (docs/theory.md).

rule generalization:
    wildcard_constraints:
        method=r"[^/]+",
    input:
        pairs=rules.prepare.output.pairs,
        features=rules.features.output.features,
        best=lambda wildcards: f"{RESULTS}/tune/{GENERALIZATION['train_set']}/{wildcards.method}/best_config.yaml",
    output:
        table=f"{RESULTS}/generalization/{{method}}.csv",
    params:
        config=lambda wildcards: {
            "generalization": GENERALIZATION,
            "training": config["training"],
            "methods": {wildcards.method: config["methods"][wildcards.method]},
            "plugins": config.get("plugins", []),
        },
    threads: 1
    resources:
        **rule_resources("generalization"),
    log:
        f"{RESULTS}/logs/generalization/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generalization/{{method}}.tsv"
    # The longest one-core jobs start first, so that the last ones do not run alone.
    priority: 10
    script:
        "../scripts/run_stage.py"


rule generalization_synthetic:
    output:
        table=f"{RESULTS}/generalization/synthetic/{{method}}.csv",
    params:
        config=lambda wildcards: {
            "generalization": GENERALIZATION,
            "training": config["training"],
            "methods": {wildcards.method: config["methods"][wildcards.method]},
            "plugins": config.get("plugins", []),
        },
    threads: 1
    resources:
        **rule_resources("generalization_synthetic"),
    log:
        f"{RESULTS}/logs/generalization/synthetic/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/generalization/synthetic/{{method}}.tsv"
    script:
        "../scripts/run_stage.py"


rule generalization_table:
    input:
        tables=[f"{RESULTS}/generalization/{m}.csv" for m in GENERALIZATION_METHODS]
        + ([f"{RESULTS}/generalization/synthetic/{m}.csv" for m in GENERALIZATION_METHODS]
           if GENERALIZATION.get("synthetic") else []),
        manifest=rules.manifest.output.manifest,
    output:
        table=report(f"{RESULTS}/tables/generalization.csv", caption="../report/generalization_table.rst", category="Tables"),
        png=report(f"{RESULTS}/figures/generalization.png", caption="../report/generalization_figure.rst", category="Figures"),
        pdf=f"{RESULTS}/figures/generalization.pdf",
    resources:
        **rule_resources("generalization_table"),
    log:
        f"{RESULTS}/logs/generalization_table.log",
    script:
        "../scripts/run_stage.py"
