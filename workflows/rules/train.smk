rule train:
    input:
        pairs=rules.prepare.output.pairs,
        features=rules.features.output.features,
        best=f"{RESULTS}/tune/{{train_set}}/{{method}}/best_config.yaml",
    output:
        model=f"{RESULTS}/models/{{train_set}}/{{method}}/seed{{seed}}/model.safetensors",
        settings=f"{RESULTS}/models/{{train_set}}/{{method}}/seed{{seed}}/config.json",
    params:
        config=lambda wildcards: {
            "training": config["training"],
            "methods": {wildcards.method: config["methods"][wildcards.method]},
            "plugins": config.get("plugins", []),
        },
    wildcard_constraints:
        seed=r"\d+",
    threads: 1
    resources:
        **rule_resources("train"),
    log:
        f"{RESULTS}/logs/train/{{train_set}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{train_set}}/{{method}}/seed{{seed}}.tsv"
    script:
        "../scripts/run_stage.py"
