rule tune_segment:
    input:
        code=stage_code("tuning", "segment", "evaluate", "labels"),
        probability=stores(volumes_with_role("validate"), "probability.zarr"),
        labels=stores(volumes_with_role("validate"), "labels.zarr"),
    output:
        TUNED_SEGMENTATION,
    log:
        log_path("tune_segment"),
    benchmark:
        benchmark_path("tune_segment")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(4000),
        runtime=runtime_minutes(60),
    params:
        split_h=config["segment"]["split_h"] or "none",
        watershed=watershed_option(),
        min_size_px=config["segment"]["min_size_px"],
    shell:
        "unetseg tune-segment --probability {input.probability} --labels {input.labels}"
        " --split-h {params.split_h} {params.watershed} --min-size-px {params.min_size_px}"
        " --out {output} > {log} 2>&1"


rule segment:
    input:
        code=stage_code("segment", "labels"),
        probability=volume_path("{volume}", "probability.zarr"),
        validation_metrics=threshold_inputs,
        tuned=tuned_inputs,
    output:
        directory(volume_path("{volume}", "segmentation.zarr")),
    log:
        log_path("segment", "{volume}"),
    benchmark:
        benchmark_path("segment", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(60),
    params:
        threshold=config["segment"]["threshold"],
        tuned=tuned_option,
        watershed=watershed_option(),
        split=split_option(),
        min_size_px=config["segment"]["min_size_px"],
    shell:
        "unetseg segment {input.probability} {output} --threshold {params.threshold}"
        " --metrics {input.validation_metrics} {params.tuned} {params.watershed} {params.split}"
        " --min-size-px {params.min_size_px} --threads {threads} > {log} 2>&1"


rule export_segmentation:
    input:
        code=stage_code("export"),
        segmentation=volume_path("{volume}", "segmentation.zarr"),
    output:
        volume_path("{volume}", "segmentation.tif"),
    log:
        log_path("export_segmentation", "{volume}"),
    benchmark:
        benchmark_path("export_segmentation", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(1000),
        runtime=runtime_minutes(60),
    shell:
        "unetseg export {input.segmentation} {output} > {log} 2>&1"


rule view:
    input:
        code=stage_code("views", "export"),
        raw=raw_store_of,
        segmentation=volume_path("{volume}", "segmentation.zarr"),
        truth=truth_store_of,
    output:
        directory(volume_path("{volume}", "view.zarr")),
    log:
        log_path("view", "{volume}"),
    benchmark:
        benchmark_path("view", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(1000),
        runtime=runtime_minutes(10),
    params:
        truth=lambda wildcards, input: f"--label truth={input.truth}" if input.truth else "",
    shell:
        "unetseg view {input.raw} {output} --label segmentation={input.segmentation}"
        " {params.truth} > {log} 2>&1"
