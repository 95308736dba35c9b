localrules: aggregate, plot, figures


SCORE_KEYS = [(t, m, s) for t in TRAIN_SETS for m in METHODS for s in SEEDS]
CUE_KEYS = [(cue, rho, m) for cue in CUE_NAMES for rho in CUE_RHOS for m in CUE_METHODS]


rule aggregate:
    input:
        pairs=rules.prepare.output.pairs,
        prepare=rules.prepare.output.report,
        manifest=rules.manifest.output.manifest,
        scores=[f"{RESULTS}/scores/{t}/{m}/seed{s}.parquet" for t, m, s in SCORE_KEYS],
        cue_scores=[f"{RESULTS}/scores/cue/{cue}/rho{rho}/{m}.parquet" for cue, rho, m in CUE_KEYS],
    output:
        main=report(f"{RESULTS}/tables/main.csv", caption="../report/main_table.rst", category="Tables"),
        markdown=f"{RESULTS}/tables/main.md",
        per_seed=report(f"{RESULTS}/tables/metrics_per_seed.csv", caption="../report/per_seed_table.rst", category="Tables"),
        comparisons=report(f"{RESULTS}/tables/comparisons.csv", caption="../report/comparisons_table.rst", category="Tables"),
        reliability=report(f"{RESULTS}/tables/reliability.csv", caption="../report/reliability_table.rst", category="Tables"),
        benchmarks=report(f"{RESULTS}/tables/benchmarks.csv", caption="../report/benchmarks_table.rst", category="Tables"),
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


rule plot:
    input:
        main=rules.aggregate.output.main,
        reliability=rules.aggregate.output.reliability,
    output:
        main_png=report(f"{RESULTS}/figures/main.png", caption="../report/main_figure.rst", category="Figures"),
        main_pdf=f"{RESULTS}/figures/main.pdf",
        reliability_png=report(f"{RESULTS}/figures/reliability.png", caption="../report/reliability_figure.rst", category="Figures"),
        reliability_pdf=f"{RESULTS}/figures/reliability.pdf",
        **({"cue_png": report(f"{RESULTS}/figures/cue.png", caption="../report/cue_figure.rst", category="Figures"),
            "cue_pdf": f"{RESULTS}/figures/cue.pdf"} if CUE_NAMES else {}),
    resources:
        **rule_resources("plot"),
    log:
        f"{RESULTS}/logs/plot.log",
    script:
        "../scripts/run_stage.py"


# `snakemake --cores all figures`: every figure and table, rebuilt from the score and
# generalization files already present; no model is trained when those are up to date.
rule figures:
    input:
        rules.aggregate.output,
        rules.plot.output,
        rules.generalization_table.output if GENERALIZATION else [],
