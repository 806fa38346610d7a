rule evaluate:
    input:
        truth=volume_path("{volume}", "labels.zarr"),
        probability=volume_path("{volume}", "probability.zarr"),
    output:
        metrics=volume_path("{volume}", "metrics.json"),
        per_slice=volume_path("{volume}", "metrics_per_slice.tsv"),
    log:
        log_path("evaluate", "{volume}"),
    benchmark:
        benchmark_path("evaluate", "{volume}")
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    conda:
        "../../envs/unetseg.yaml"
    shell:
        "unetseg evaluate --truth {input.truth} --prediction {input.probability}"
        " --out {output.metrics} --per-slice {output.per_slice} --threads {threads}"
        " > {log} 2>&1"
