# Hydro models: the global sphere radius over all models (paper appendix A1.1).


rule sphere:
    input:
        models=list(MODEL_FILES.values()),
    output:
        "results/sphere.json",
    log:
        "logs/sphere.log",
    conda:
        "../../envs/coemu.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        source=sphere_source_args(),
    shell:
        "coemu sphere {output} {params.source} > {log} 2>&1"
