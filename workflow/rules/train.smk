rule train:
    input:
        code=stage_code(
            "train", "model", "augment", "intensity", "labels", "averaging", "rollback"
        ),
        raw=[raw_store(name) for name in volumes_with_role("train")],
        labels=stores(volumes_with_role("train"), "labels.zarr"),
        weights=stores(volumes_with_role("train"), "weights.zarr"),
        val_raw=[raw_store(name) for name in volumes_with_role("validate")],
        val_labels=stores(volumes_with_role("validate"), "labels.zarr"),
    output:
        model=f"{RESULTS}/model/model.pt",
        log=f"{RESULTS}/model/train_log.tsv",
    params:
        settings=train_settings(),
        checkpoint=f"{RESULTS}/model/checkpoint.pt",
    log:
        log_path("train"),
    benchmark:
        benchmark_path("train")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=1440,
        gpu=config["train"]["gpus"],
    conda:
        "../../envs/unetseg.yaml"
    shell:
        "unetseg train --raw {input.raw} --labels {input.labels} --weights {input.weights}"
        " --val-raw {input.val_raw} --val-labels {input.val_labels}"
        " --settings '{params.settings}' --checkpoint {params.checkpoint}"
        " --model {output.model} --log {output.log} --threads {threads} > {log} 2>&1"
