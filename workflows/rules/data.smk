rule prepare:
    output:
        pairs=f"{RESULTS}/data/pairs.parquet",
        report=f"{RESULTS}/data/prepare.json",
    params:
        config={key: config.get(key) for key in ("data_root", "split", "train_sets", "benchmark_sources", "benchmarks")},
        report_dir=f"{RESULTS}/data/reports",
    resources:
        **rule_resources("prepare"),
    log:
        f"{RESULTS}/logs/prepare.log",
    benchmark:
        f"{RESULTS}/benchmarks/prepare.tsv"
    script:
        "../scripts/run_stage.py"
