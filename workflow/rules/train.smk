rule train:
    input:
        code=stage_code(
            "train",
            "samples",
            "validation",
            "augment_device",
            "model",
            "unet",
            "augment",
            "intensity",
            "labels",
            "averaging",
            "rollback",
            "topology",
            "choice",
        ),
        raw=[raw_store(name) for name in volumes_with_role("train")],
        labels=stores(volumes_with_role("train"), "labels.zarr"),
        weights=stores(volumes_with_role("train"), "weights.zarr"),
        val_raw=[raw_store(name) for name in volumes_with_role("validate")],
        val_labels=stores(volumes_with_role("validate"), "labels.zarr"),
    output:
        model=f"{RESULTS}/model/model.pt",
        log=f"{RESULTS}/model/train_log.tsv",
        validation=f"{RESULTS}/model/validation.json",
    log:
        log_path("train"),
    benchmark:
        benchmark_path("train")
    conda:
        "../../envs/unetseg.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(8000),
        runtime=runtime_minutes(1440),
        gpu=config["train"]["gpus"],
    params:
        settings=train_settings(),
        checkpoint=f"{RESULTS}/model/checkpoint.pt",
    shell:
        "unetseg train --raw {input.raw} --labels {input.labels} --weights {input.weights}"
        " --val-raw {input.val_raw} --val-labels {input.val_labels}"
        " --settings '{params.settings}' --checkpoint {params.checkpoint}"
        " --model {output.model} --log {output.log} --validation-summary {output.validation}"
        " --threads {threads} > {log} 2>&1"


rule export_model:
    input:
        code=stage_code("modelzoo", "unet", "tiling", "intensity"),
        model=f"{RESULTS}/model/model.pt",
        sample=export_sample(),
    output:
        package=directory(f"{RESULTS}/model/bioimageio"),
        archive=f"{RESULTS}/model/bioimageio.zip",
    log:
        log_path("export_model"),
    benchmark:
        benchmark_path("export_model")
    conda:
        "../../envs/unetseg.yaml"
    threads: 1
    resources:
        mem_mb=memory_mb(4000),
        runtime=runtime_minutes(30),
    params:
        name=config["export_model"]["name"],
        authors=" ".join(f"--author {shlex.quote(a)}" for a in config["export_model"]["authors"]),
        license=config["export_model"]["license"],
    shell:
        "unetseg export-model {input.model} {output.package} --sample {input.sample}"
        " --name {params.name:q} {params.authors} --license {params.license:q} > {log} 2>&1"
