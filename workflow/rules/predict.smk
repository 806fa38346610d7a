rule predict:
    input:
        code=stage_code("predict", "model", "unet", "tiling", "intensity"),
        model=model_path(),
        raw=raw_store_of,
    output:
        directory(volume_path("{volume}", "probability.zarr")),
    log:
        log_path("predict", "{volume}"),
    benchmark:
        benchmark_path("predict", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(8000),
        runtime=runtime_minutes(240),
        gpu=config["predict"]["gpus"],
    params:  # each as its option: Snakemake compares params as a set of values
        tile_out=f"--tile-out {config['predict']['tile_out']}",
        batch_size=f"--batch-size {config['predict']['batch_size']}",
        block_px=f"--block-px {config['predict']['block_px']}",
        scheduler=f"--scheduler {config['predict']['scheduler']}",
        workers=f"--workers {config['predict']['workers']}",
        precision=f"--precision {config['predict']['precision']}",
        channels_last=channels_last_option("predict"),
        device=f"--device {config['predict']['device']}",
        dtype=f"--dtype {config['predict']['dtype']}",
        cname=f"--cname {config['predict']['compressor']}",
        clevel=f"--clevel {config['predict']['clevel']}",
        architecture=architecture_option(),
        tta="--tta" if config["predict"]["tta"] else "",
        address=scheduler_address_option(),
    shell:
        "unetseg predict {input.model} {input.raw} {output} {params.tile_out}"
        " {params.batch_size} {params.block_px} {params.scheduler} {params.workers}"
        " --threads {threads} {params.precision} {params.channels_last} {params.device}"
        " {params.dtype} {params.cname} {params.clevel}"
        " {params.architecture} {params.tta} {params.address}"
        " > {log} 2>&1"
