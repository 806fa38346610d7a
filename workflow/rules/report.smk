rule report_data:
    input:
        code=stage_code("report", "labels"),
        raw=raw_store_of,
        labels=volume_path("{volume}", "labels.zarr"),
        weights=volume_path("{volume}", "weights.zarr"),
    output:
        report(
            f"{RESULTS}/report/{{volume}}/data.png",
            caption="../report/data.rst",
            category="Data",
            subcategory="{volume}",
            labels={"volume": "{volume}", "figure": "raw, labels and weight map"},
        ),
    log:
        log_path("report_data", "{volume}"),
    benchmark:
        benchmark_path("report_data", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(10),
    shell:
        "unetseg report data --raw {input.raw} --labels {input.labels}"
        " --weights {input.weights} --out {output} > {log} 2>&1"


rule report_training:
    input:
        code=stage_code("report", "rollback"),
        log=f"{RESULTS}/model/train_log.tsv",
    output:
        report(
            f"{RESULTS}/report/training.png",
            caption="../report/training.rst",
            category="Training",
            labels={"figure": "loss and validation curves"},
        ),
    log:
        log_path("report_training"),
    benchmark:
        benchmark_path("report_training")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(1000),
        runtime=runtime_minutes(10),
    shell:
        "unetseg report training --log {input.log} --out {output} > {log} 2>&1"


rule report_prediction:
    input:
        code=stage_code("report"),
        raw=raw_store_of,
        labels=volume_path("{volume}", "labels.zarr"),
        probability=volume_path("{volume}", "probability.zarr"),
        segmentation=volume_path("{volume}", "segmentation.zarr"),
        metrics=volume_path("{volume}", "metrics.json"),
    output:
        report(
            f"{RESULTS}/report/{{volume}}/prediction.png",
            caption="../report/prediction.rst",
            category="Prediction",
            subcategory="{volume}",
            labels={"volume": "{volume}", "figure": "held-out slices and errors"},
        ),
    log:
        log_path("report_prediction", "{volume}"),
    benchmark:
        benchmark_path("report_prediction", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(10),
    shell:
        "unetseg report prediction --raw {input.raw} --labels {input.labels}"
        " --probability {input.probability} --segmentation {input.segmentation}"
        " --metrics {input.metrics} --out {output} > {log} 2>&1"


rule report_instances:
    input:
        code=stage_code("report", "evaluate", "labels"),
        raw=raw_store_of,
        labels=volume_path("{volume}", "labels.zarr"),
        segmentation=volume_path("{volume}", "segmentation.zarr"),
        instances=volume_path("{volume}", "instance_metrics.json"),
    output:
        report(
            f"{RESULTS}/report/{{volume}}/instances.png",
            caption="../report/instances.rst",
            category="Metrics",
            subcategory="{volume}",
            labels={"volume": "{volume}", "figure": "instances: AP per image and errors"},
        ),
    log:
        log_path("report_instances", "{volume}"),
    benchmark:
        benchmark_path("report_instances", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(10),
    shell:
        "unetseg report instances --raw {input.raw} --labels {input.labels}"
        " --segmentation {input.segmentation} --instances {input.instances} --out {output}"
        " > {log} 2>&1"


rule report_volume:
    input:
        code=stage_code("report"),
        raw=raw_store_of,
        probability=volume_path("{volume}", "probability.zarr"),
        segmentation=volume_path("{volume}", "segmentation.zarr"),
    output:
        report(
            f"{RESULTS}/report/{{volume}}/volume.png",
            caption="../report/volume.rst",
            category="Prediction",
            subcategory="{volume}",
            labels={"volume": "{volume}", "figure": "slices, cells and probabilities"},
        ),
    log:
        log_path("report_volume", "{volume}"),
    benchmark:
        benchmark_path("report_volume", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(30),
    shell:
        "unetseg report volume --raw {input.raw} --probability {input.probability}"
        " --segmentation {input.segmentation} --volume {wildcards.volume} --out {output}"
        " > {log} 2>&1"


rule report_metrics:
    input:
        code=stage_code("report"),
        metrics=volume_path("{volume}", "metrics.json"),
    output:
        report(
            f"{RESULTS}/report/{{volume}}/metrics.png",
            caption="../report/metrics.rst",
            category="Metrics",
            subcategory="{volume}",
            labels={"volume": "{volume}", "figure": "metrics beside Table 1"},
        ),
    log:
        log_path("report_metrics", "{volume}"),
    benchmark:
        benchmark_path("report_metrics", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(1000),
        runtime=runtime_minutes(10),
    shell:
        "unetseg report metrics --metrics {input.metrics} --volume {wildcards.volume}"
        " --out {output} > {log} 2>&1"


rule report_augmentation:
    input:
        code=stage_code("report", "intensity", "labels"),
        raw=raw_store_of,
        labels=volume_path("{volume}", "labels.zarr"),
        weights=volume_path("{volume}", "weights.zarr"),
    output:
        report(
            f"{RESULTS}/report/{{volume}}/augmentation.png",
            caption="../report/augmentation.rst",
            category="Data",
            subcategory="{volume}",
            labels={"volume": "{volume}", "figure": "augmented training samples"},
        ),
    log:
        log_path("report_augmentation", "{volume}"),
    benchmark:
        benchmark_path("report_augmentation", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(10),
    params:
        settings=train_settings(),
    shell:
        "unetseg report augmentation --raw {input.raw} --labels {input.labels}"
        " --weights {input.weights} --settings '{params.settings}' --out {output} > {log} 2>&1"


rule report_run:
    input:
        code=stage_code("report"),
        outputs=run_report_inputs(),
    output:
        figure=report(
            f"{RESULTS}/report/run.png",
            caption="../report/run.rst",
            category="Run",
            labels={"figure": "time and memory per job"},
        ),
        page=report(
            f"{RESULTS}/report/run.html",
            caption="../report/run.rst",
            category="Run",
            labels={"figure": "jobs, machine, versions, configuration"},
        ),
    log:
        log_path("report_run"),
    benchmark:
        benchmark_path("report_run")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(10),
    params:
        benchmarks=f"{RESULTS}/benchmarks",
        config=json.dumps(config),
    shell:
        "unetseg report run --benchmarks {params.benchmarks} --settings '{params.config}'"
        " --html {output.page} --out {output.figure} > {log} 2>&1"
