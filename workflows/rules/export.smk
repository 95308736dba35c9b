# Export: the model of one training set and seed per method, as a Hugging Face folder with
# the reward head inside, under export.dir/{method}/ (see `vrm score`).

localrules: export


rule export:
    input:
        config=f"{RESULTS}/models/{EXPORT_TRAIN_SET}/{{method}}/seed{EXPORT_SEED}/config.json",
        head=f"{RESULTS}/models/{EXPORT_TRAIN_SET}/{{method}}/seed{EXPORT_SEED}/reward_head.safetensors",
    output:
        config=f"{EXPORT_DIR}/{{method}}/config.json",
        head=f"{EXPORT_DIR}/{{method}}/reward_head.safetensors",
    resources:
        **rule_resources("export"),
    log:
        f"{RESULTS}/logs/export/{{method}}.log",
    script:
        "../scripts/run_stage.py"
