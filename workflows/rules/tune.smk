rule tune:
    input:
        pairs=rules.prepare.output.pairs,
        features=rules.features.output.features,
    output:
        trials=f"{RESULTS}/tune/{{train_set}}/{{method}}/trials.csv",
        best=f"{RESULTS}/tune/{{train_set}}/{{method}}/best_config.yaml",
        figure=report(f"{RESULTS}/tune/{{train_set}}/{{method}}/sweep.png", caption="../report/sweep_figure.rst",
                      category="Sweeps", subcategory="{train_set}", labels={"method": "{method}"}),
        figure_pdf=f"{RESULTS}/tune/{{train_set}}/{{method}}/sweep.pdf",
    params:
        config=lambda wildcards: {
            "tune": config.get("tune", {}),
            "training": config["training"],
            "methods": {wildcards.method: config["methods"][wildcards.method]},
            "plugins": config.get("plugins", []),
        },
    threads: workflow.cores
    # Sweeps take every core. Run them before the one-core jobs: once those fill half the
    # cores, a sweep cannot start and the other half idles.
    priority: 30
    resources:
        **rule_resources("tune"),
    log:
        f"{RESULTS}/logs/tune/{{train_set}}/{{method}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tune/{{train_set}}/{{method}}.tsv"
    script:
        "../scripts/run_stage.py"
