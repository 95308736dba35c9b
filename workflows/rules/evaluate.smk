rule evaluate:
    input:
        pairs=rules.prepare.output.pairs,
        features=rules.features.output.features,
        model=rules.train.output.model,
    output:
        scores=f"{RESULTS}/scores/{{train_set}}/{{method}}/seed{{seed}}.parquet",
    params:
        config={"evaluation": config["evaluation"], "plugins": config.get("plugins", [])},
    wildcard_constraints:
        seed=r"\d+",
    threads: 1
    resources:
        **rule_resources("evaluate"),
    log:
        f"{RESULTS}/logs/evaluate/{{train_set}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{train_set}}/{{method}}/seed{{seed}}.tsv"
    script:
        "../scripts/run_stage.py"
