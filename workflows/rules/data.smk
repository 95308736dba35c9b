localrules: manifest


rule prepare:
    output:
        pairs=f"{RESULTS}/data/pairs.parquet",
        report=f"{RESULTS}/data/prepare.json",
        files=f"{RESULTS}/data/files.json",
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


rule manifest:
    input:
        files=rules.prepare.output.files,
    output:
        manifest=f"{RESULTS}/manifest.json",
    params:
        # A new commit, an uncommitted change or a config change writes a new manifest, and
        # the tables, which name it, are written again.
        config=config,
        git=GIT_STATE,
        workflow_folder=workflow.basedir,
    resources:
        **rule_resources("manifest"),
    log:
        f"{RESULTS}/logs/manifest.log",
    script:
        "../scripts/run_stage.py"
