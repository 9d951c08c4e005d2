# Images: the LTE CO line solver renders every rotation of every cube (one job per model),
# plus the face-on line-centre image that pretraining uses.


rule images:
    input:
        "results/cubes/{model}.nc",
    output:
        images="results/images/{model}.nc",
        faceon="results/faceon/{model}.nc",
    log:
        "logs/images/{model}.log",
    benchmark:
        "benchmarks/images/{model}.tsv"
    group:
        "images"
    conda:
        "../../envs/coemu.yaml"
    threads: 2
    resources:
        mem_mb=image_mem_mb(),
        runtime=image_runtime_min(),
        gpu=IMAGE_GPUS,
    params:
        solver=solver_args(),
    shell:
        "coemu render {input} {output.images} --faceon {output.faceon} {params.solver} > {log} 2>&1"
