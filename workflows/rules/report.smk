localrules: aggregate, figures


SCORE_KEYS = [(t, m, s) for t in TRAIN_SETS for m in METHODS for s in SEEDS]
CUE_KEYS = [(cue, rho, m) for cue in CUE_NAMES for rho in CUE_RHOS for m in CUE_METHODS]


rule aggregate:
    input:
        pairs=rules.prepare.output.pairs,
        prepare=rules.prepare.output.report,
        scores=[f"{RESULTS}/scores/{t}/{m}/seed{s}.parquet" for t, m, s in SCORE_KEYS],
        cue_scores=[f"{RESULTS}/scores/cue/{cue}/rho{rho}/{m}.parquet" for cue, rho, m in CUE_KEYS],
    output:
        main=f"{RESULTS}/tables/main.csv",
        markdown=f"{RESULTS}/tables/main.md",
        per_seed=f"{RESULTS}/tables/metrics_per_seed.csv",
        comparisons=f"{RESULTS}/tables/comparisons.csv",
        reliability=f"{RESULTS}/tables/reliability.csv",
        benchmarks=f"{RESULTS}/tables/benchmarks.csv",
    params:
        config={key: config.get(key) for key in ("benchmarks", "evaluation", "train_sets", "cues")},
        score_keys=SCORE_KEYS,
        cue_keys=CUE_KEYS,
    resources:
        **rule_resources("aggregate"),
    log:
        f"{RESULTS}/logs/aggregate.log",
    script:
        "../scripts/run_stage.py"


rule figures:
    input:
        main=rules.aggregate.output.main,
        reliability=rules.aggregate.output.reliability,
    output:
        main_png=f"{RESULTS}/figures/main.png",
        main_pdf=f"{RESULTS}/figures/main.pdf",
        reliability_png=f"{RESULTS}/figures/reliability.png",
        reliability_pdf=f"{RESULTS}/figures/reliability.pdf",
        **({"cue_png": f"{RESULTS}/figures/cue.png", "cue_pdf": f"{RESULTS}/figures/cue.pdf"} if CUE_NAMES else {}),
    resources:
        **rule_resources("figures"),
    log:
        f"{RESULTS}/logs/figures.log",
    script:
        "../scripts/run_stage.py"
