# Cubes: trim each model to the sphere, rotate it, regrid to the cube. One job per block
# of models (models.per_job). The job's declared output is the block's manifest, written
# last; the per-model cube files (results/cubes/{model}.nc) are written atomically one by
# one and carry a fingerprint (model, radius, settings, code), so a rerun of the block
# (a model added to it, a failure) skips those already made.
# A rerun of the sphere (models added) reruns every block, which then makes only what changed.

for block in BLOCKS:

    rule:
        name:
            f"cubes_{block}"
        input:
            models=block_model_files(block),
            sphere="results/sphere.json",
        output:
            manifest=f"results/blocks/cubes/{block}.json",
        log:
            f"logs/cubes/{block}.log",
        benchmark:
            f"benchmarks/cubes/{block}.tsv"
        conda:
            "../../envs/coemu.yaml"
        threads: 1
        resources:
            mem_mb=cube_mem_mb(),
            runtime=cube_runtime_min(len(BLOCKS[block])),
        params:
            models=BLOCKS[block],
            cubes=block_files("cubes", block),
            source=model_source_args(),
            rotations=config["cubes"]["rotations"],
            box_cells=config["cubes"]["box_cells"],
            grid=config["cubes"]["grid"],
            code=CODE["cubes"],
        shell:
            "OMP_NUM_THREADS={threads} coemu cubes-many --models {params.models} --outputs {params.cubes}"
            " --manifest {output.manifest} --sphere {input.sphere} {params.source} {input.models}"
            " --rotations {params.rotations} --box-cells {params.box_cells}"
            " --grid {params.grid} > {log} 2>&1"
