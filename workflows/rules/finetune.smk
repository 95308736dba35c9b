# Fine-tune mode: one job per (training set, method, seed) trains the backbone with the
# method's head, writes the model as a Hugging Face folder and scores every test pair in
# the same format as head mode's evaluate rule, so aggregate and figures read both.

rule finetune:
    input:
        pairs=rules.prepare.output.pairs,
    output:
        config=f"{RESULTS}/models/{{train_set}}/{{method}}/seed{{seed}}/config.json",
        head=f"{RESULTS}/models/{{train_set}}/{{method}}/seed{{seed}}/reward_head.safetensors",
        scores=f"{RESULTS}/scores/{{train_set}}/{{method}}/seed{{seed}}.parquet",
    params:
        config=lambda wildcards: {
            "finetune": config.get("finetune") or {},
            "evaluation": config["evaluation"],
            "methods": {wildcards.method: config["methods"][wildcards.method]},
            "plugins": config.get("plugins", []),
        },
    wildcard_constraints:
        seed=r"\d+",
    threads: workflow.cores
    resources:
        **rule_resources("finetune"),
    log:
        f"{RESULTS}/logs/finetune/{{train_set}}/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/finetune/{{train_set}}/{{method}}/seed{{seed}}.tsv"
    script:
        "../scripts/run_stage.py"
