SCORE_KEYS = [(t, m, s) for t in TRAIN_SETS for m in METHODS for s in SEEDS]


rule aggregate:
    input:
        pairs=rules.prepare.output.pairs,
        scores=[f"{RESULTS}/scores/{t}/{m}/seed{s}.parquet" for t, m, s in SCORE_KEYS],
    output:
        main=f"{RESULTS}/tables/main.csv",
        markdown=f"{RESULTS}/tables/main.md",
        per_seed=f"{RESULTS}/tables/metrics_per_seed.csv",
        comparisons=f"{RESULTS}/tables/comparisons.csv",
    params:
        config={"benchmarks": config["benchmarks"], "evaluation": config["evaluation"]},
        score_keys=SCORE_KEYS,
    log:
        f"{RESULTS}/logs/aggregate.log",
    script:
        "../scripts/run_stage.py"


rule figures:
    input:
        main=rules.aggregate.output.main,
    output:
        png=f"{RESULTS}/figures/main.png",
        pdf=f"{RESULTS}/figures/main.pdf",
    log:
        f"{RESULTS}/logs/figures.log",
    script:
        "../scripts/run_stage.py"
