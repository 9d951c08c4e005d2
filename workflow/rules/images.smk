# Images: the LTE CO line solver renders every rotation of every cube, plus the face-on
# line-centre image that pretraining uses. One job per block of models (images.models_per_job):
# the outputs stay per model, with 55 image jobs instead of 10,903 at the paper's scale.

for block, block_models in IMAGE_BLOCKS.items():

    rule:
        name:
            f"images_{block}"
        input:
            cubes=expand("results/cubes/{model}.nc", model=block_models),
        output:
            images=expand("results/images/{model}.nc", model=block_models),
            faceon=expand("results/faceon/{model}.nc", model=block_models),
        log:
            f"logs/images/{block}.log",
        benchmark:
            f"benchmarks/images/{block}.tsv"
        conda:
            "../../envs/coemu.yaml"
        threads: 2
        resources:
            mem_mb=image_mem_mb(),
            runtime=image_runtime_min(len(block_models)),
            gpu=IMAGE_GPUS,
        params:
            solver=solver_args(),
        shell:
            "OMP_NUM_THREADS={threads} coemu render-many --cubes {input.cubes} --images {output.images}"
            " --faceon {output.faceon} {params.solver} > {log} 2>&1"
