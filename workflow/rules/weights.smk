rule weights:
    input:
        code=stage_code("weights", "labels"),
        labels=volume_path("{volume}", "labels.zarr"),
    output:
        directory(volume_path("{volume}", "weights.zarr")),
    log:
        log_path("weights", "{volume}"),
    benchmark:
        benchmark_path("weights", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(60),
    params:
        w0=f"--w0 {config['weights']['w0']}",  # options, not bare values: see predict.smk
        sigma_px=f"--sigma-px {config['weights']['sigma_px']}",
    shell:
        "unetseg weights {input.labels} {output} {params.w0} {params.sigma_px}"
        " --threads {threads} > {log} 2>&1"
