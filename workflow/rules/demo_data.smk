rule demo_data:
    input:
        code=stage_code("data"),
    output:
        raw=f"{RESULTS}/demo/raw.tif",
        labels=f"{RESULTS}/demo/labels.tif",
    log:
        log_path("demo_data"),
    benchmark:
        benchmark_path("demo_data")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(10),
    params:
        shape=" ".join(str(n) for n in config["demo"]["shape"]),
        seed=f"--seed {config['demo']['seed']}",  # options, not bare values: see predict.smk
        noise=f"--noise {config['demo']['noise']}",
    shell:
        "unetseg demo-data --raw {output.raw} --labels {output.labels} --shape {params.shape}"
        " {params.seed} {params.noise} > {log} 2>&1"
