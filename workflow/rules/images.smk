# Images: the LTE CO line solver renders every rotation of every cube, plus the face-on
# line-centre image that pretraining uses. One job per block of models (models.per_job),
# after that block's cube job (its manifest). As for the cubes, the declared output is
# the block's manifest (each model's cube, image and face-on files); the per-model
# images are written atomically and skipped when up to date (fingerprint: cube file,
# solver settings, code).


rule images:
    input:
        cubes=rules.cubes.output.manifest,
        datafile=LINE_DATAFILE,
        changed=changed_block("images"),
    output:
        manifest="results/blocks/images/{block}.json",
    log:
        "logs/images/{block}.log",
    benchmark:
        "benchmarks/images/{block}.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: 2
    resources:
        mem_mb=resources.image_mem_mb(CUBES["rotations"], CUBES["grid"]),
        runtime=lambda w: resources.image_runtime_min(
            CUBES["rotations"],
            CUBES["grid"],
            IMAGES["channels"],
            IMAGE_GPUS > 0,
            block_size(w),
        ),
        gpu=IMAGE_GPUS,
        cpus_per_gpu=2 * IMAGE_GPUS,
    params:
        cubes=lambda w: block_files("cubes", w.block),
        images=lambda w: block_files("images", w.block),
        faceon=lambda w: block_files("faceon", w.block),
        config=stage_config("images"),
        code=CODE["images"],
    shell:
        "OMP_NUM_THREADS={threads} coemu render-many --cubes {params.cubes:q}"
        " --images {params.images:q} --faceon {params.faceon:q} --manifest {output.manifest:q}"
        " --config {params.config:q} > {log:q} 2>&1"
