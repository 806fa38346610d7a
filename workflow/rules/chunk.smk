rule chunk_raw:
    input:
        code=stage_code("chunk", "labels"),
        raw=raw_tiff,
    output:
        directory(volume_path("{volume}", "raw.zarr")),
    log:
        log_path("chunk_raw", "{volume}"),
    benchmark:
        benchmark_path("chunk_raw", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(60),
    params:
        slices=slice_option,
        channel=channel_option("--channel"),
        voxel_size=voxel_size_option,
        chunks=f"--chunks {','.join(str(n) for n in config['chunk']['chunk_shape'])}",
        cname=f"--cname {config['chunk']['compressor']}",
        clevel=f"--clevel {config['chunk']['clevel']}",
        shards=shards_option(),
        levels=f"--levels {config['chunk']['levels']}",
    shell:
        "unetseg chunk {input.raw} {output} {params.chunks} {params.slices} {params.channel}"
        " {params.voxel_size} {params.cname} {params.clevel}"
        " {params.shards} {params.levels} --threads {threads} > {log} 2>&1"


rule chunk_labels:
    input:
        code=stage_code("chunk", "labels"),
        labels=labels_tiff,
        raw=raw_tiff,
    output:
        directory(volume_path("{volume}", "labels.zarr")),
    log:
        log_path("chunk_labels", "{volume}"),
    benchmark:
        benchmark_path("chunk_labels", "{volume}")
    conda:
        "../../envs/unetseg.yaml"
    threads: 2
    resources:
        mem_mb=memory_mb(2000),
        runtime=runtime_minutes(60),
    params:
        slices=slice_option,
        raw_channel=channel_option("--match-channel"),
        voxel_size=voxel_size_option,
        chunks=f"--chunks {','.join(str(n) for n in config['chunk']['chunk_shape'])}",
        cname=f"--cname {config['chunk']['compressor']}",
        clevel=f"--clevel {config['chunk']['clevel']}",
        shards=shards_option(),
        levels=f"--levels {config['chunk']['levels']}",
        label_kind=lambda wildcards: f"--label-kind {VOLUMES[wildcards.volume].get('label_kind', 'auto')}",
        ignore_label=ignore_label_option,
    shell:
        "unetseg chunk {input.labels} {output} --labels --match {input.raw} {params.raw_channel}"
        " {params.chunks} {params.slices} {params.voxel_size}"
        " {params.cname} {params.clevel} {params.shards}"
        " {params.levels} {params.label_kind} {params.ignore_label}"
        " --threads {threads} > {log} 2>&1"
