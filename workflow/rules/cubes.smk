# Cubes: trim each model to the sphere, rotate it, regrid to the cube (one job per model).


rule cubes:
    input:
        model=MODEL_FILE,
        sphere="results/sphere.json",
    output:
        "results/cubes/{model}.nc",
    log:
        "logs/cubes/{model}.log",
    benchmark:
        "benchmarks/cubes/{model}.tsv"
    group:
        "cubes"
    conda:
        "../../envs/coemu.yaml"
    threads: 1
    resources:
        mem_mb=cube_mem_mb(),
        runtime=cube_runtime_min(),
    params:
        source=model_source_args(),
        rotations=config["cubes"]["rotations"],
        box_cells=config["cubes"]["box_cells"],
        grid=config["cubes"]["grid"],
    shell:
        "OMP_NUM_THREADS={threads} coemu cubes {output} {input.model} --model {wildcards.model} {params.source}"
        " --sphere {input.sphere}"
        " --rotations {params.rotations} --box-cells {params.box_cells}"
        " --grid {params.grid} > {log} 2>&1"
