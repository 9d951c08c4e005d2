# Cubes: trim each model to the sphere, rotate it, regrid to the cube. One job per block
# of models (models.per_job), `{block}` = b0000, b0001, ... The job's declared output is
# the block's manifest, written last; the per-model cube files (results/cubes/{model}.nc)
# are written atomically one by one and carry a fingerprint (model, radius, settings,
# code), so a rerun of the block (a model added to it, a failure) skips those already made.
# A rerun of the sphere (models added) reruns every block, which then makes only what changed.


rule cubes:
    input:
        models=block_model_files,
        sphere=rules.sphere.output.sphere,
        changed=changed_block("cubes"),
    output:
        manifest="results/blocks/cubes/{block}.json",
    log:
        "logs/cubes/{block}.log",
    benchmark:
        "benchmarks/cubes/{block}.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: 1
    resources:
        mem_mb=resources.cube_mem_mb(CUBES["rotations"], CUBES["grid"]),
        runtime=lambda w: resources.cube_runtime_min(
            CUBES["rotations"], CUBES["grid"], block_size(w)
        ),
    params:
        models=lambda w: BLOCKS[w.block],
        cubes=lambda w: block_files("cubes", w.block),
        inputs=lambda w, input: (
            ["--inputs", *input.models] if not SYNTHETIC else ["--synthetic"]
        ),
        config=stage_config("cubes"),
        code=CODE["cubes"],
    shell:
        "OMP_NUM_THREADS={threads} coemu cubes-many --models {params.models:q}"
        " --outputs {params.cubes:q} {params.inputs:q} --sphere {input.sphere:q}"
        " --manifest {output.manifest:q} --config {params.config:q} > {log:q} 2>&1"
