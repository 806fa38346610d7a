rule predict:
    input:
        code=stage_code("predict", "model", "tiling"),
        model=model_path(),
        raw=raw_store_of,
    output:
        directory(volume_path("{volume}", "probability.zarr")),
    params:
        tile_out=config["predict"]["tile_out"],
        batch_size=config["predict"]["batch_size"],
        block_px=config["predict"]["block_px"],
        scheduler=config["predict"]["scheduler"],
        workers=config["predict"]["workers"],
        precision=config["predict"]["precision"],
        channels_last="--channels-last" if config["predict"]["channels_last"] else "",
        device=config["predict"]["device"],
        dtype=config["predict"]["dtype"],
        cname=config["predict"]["compressor"],
        clevel=config["predict"]["clevel"],
        architecture=architecture_option(),
        tta="--tta" if config["predict"]["tta"] else "",
        address=scheduler_address_option(),
    log:
        log_path("predict", "{volume}"),
    benchmark:
        benchmark_path("predict", "{volume}")
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=config["predict"]["gpus"],
    conda:
        "../../envs/unetseg.yaml"
    shell:
        "unetseg predict {input.model} {input.raw} {output} --tile-out {params.tile_out}"
        " --batch-size {params.batch_size} --block-px {params.block_px}"
        " --scheduler {params.scheduler} --workers {params.workers} --threads {threads}"
        " --precision {params.precision} {params.channels_last} --device {params.device}"
        " --dtype {params.dtype} --cname {params.cname} --clevel {params.clevel}"
        " {params.architecture} {params.tta} {params.address}"
        " > {log} 2>&1"
