rule evaluate:
    input:
        code=stage_code("evaluate", "labels"),
        truth=volume_path("{volume}", "labels.zarr"),
        probability=volume_path("{volume}", "probability.zarr"),
    output:
        metrics=volume_path("{volume}", "metrics.json"),
        per_slice=report(
            volume_path("{volume}", "metrics_per_slice.tsv"),
            caption="../report/per_slice.rst",
            category="Metrics",
            subcategory="{volume}",
            labels={"volume": "{volume}", "figure": "per-slice metrics (table)"},
        ),
    log:
        log_path("evaluate", "{volume}"),
    benchmark:
        benchmark_path("evaluate", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(60),
    shell:
        "unetseg evaluate --truth {input.truth} --prediction {input.probability}"
        " --out {output.metrics} --per-slice {output.per_slice} --threads {threads}"
        " > {log} 2>&1"


rule evaluate_instances:
    input:
        code=stage_code("evaluate", "labels"),
        truth=volume_path("{volume}", "labels.zarr"),
        segmentation=volume_path("{volume}", "segmentation.zarr"),
    output:
        volume_path("{volume}", "instance_metrics.json"),
    log:
        log_path("evaluate_instances", "{volume}"),
    benchmark:
        benchmark_path("evaluate_instances", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(60),
    shell:
        "unetseg evaluate-instances --truth {input.truth} --segmentation {input.segmentation}"
        " --out {output} > {log} 2>&1"


rule summarize:
    input:
        code=stage_code("evaluate"),
        metrics=stores(volumes_with_role(*EVALUATED), "metrics.json"),
        instances=stores(volumes_with_role(*EVALUATED), "instance_metrics.json"),
    output:
        report(
            f"{RESULTS}/metrics_summary.tsv",
            caption="../report/summary.rst",
            category="Metrics",
        ),
    log:
        log_path("summarize"),
    benchmark:
        benchmark_path("summarize")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(1000),
        runtime=runtime_minutes(10),
    params:
        names=volumes_with_role(*EVALUATED),
        roles=list(evaluated_roles().values()),
    shell:
        "unetseg summarize --names {params.names} --roles {params.roles} --metrics {input.metrics}"
        " --instances {input.instances} --out {output} > {log} 2>&1"
