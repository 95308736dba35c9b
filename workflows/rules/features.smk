rule features:
    input:
        pairs=rules.prepare.output.pairs,
    output:
        features=f"{RESULTS}/features/pairs.safetensors",
    params:
        config={"backbone": config["backbone"], "cache_dir": config.get("cache_dir", "results/cache")},
    threads: workflow.cores
    resources:
        **rule_resources("features"),
    log:
        f"{RESULTS}/logs/features.log",
    benchmark:
        f"{RESULTS}/benchmarks/features.tsv"
    script:
        "../scripts/run_stage.py"
