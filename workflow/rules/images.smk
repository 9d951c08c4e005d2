# Images: the LTE CO line solver renders every rotation of every cube, plus the face-on
# line-centre image that pretraining uses. One job per block of models (models.per_job),
# after that block's cube job (its manifest). As for the cubes, the declared output is
# the block's manifest; the per-model images are written atomically and skipped when up
# to date (fingerprint: cube file, solver settings, code).

for block in BLOCKS:

    rule:
        name:
            f"images_{block}"
        input:
            cubes=f"results/blocks/cubes/{block}.json",
            datafile=LINE_DATAFILE,
        output:
            manifest=f"results/blocks/images/{block}.json",
        log:
            f"logs/images/{block}.log",
        benchmark:
            f"benchmarks/images/{block}.tsv"
        conda:
            "../../envs/coemu.yaml"
        threads: 2
        resources:
            mem_mb=image_mem_mb(),
            runtime=image_runtime_min(len(BLOCKS[block])),
            gpu=IMAGE_GPUS,
            cpus_per_gpu=2 * IMAGE_GPUS,
        params:
            cubes=block_files("cubes", block),
            images=block_files("images", block),
            faceon=block_files("faceon", block),
            solver=solver_args(),
            code=CODE["images"],
        shell:
            "OMP_NUM_THREADS={threads} coemu render-many --cubes {params.cubes} --images {params.images}"
            " --faceon {params.faceon} --manifest {output.manifest} {params.solver} > {log} 2>&1"
