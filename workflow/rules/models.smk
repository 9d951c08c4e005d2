# Hydro models: the global sphere radius over all models (paper appendix A1.1). Adding
# models reruns it and so every cube job; those jobs keep every cube whose fingerprint
# (model, radius, settings, code) is unchanged, and remake them all only when a new model
# makes the sphere smaller.


rule sphere:
    input:
        models=list(MODEL_FILES.values()),
    output:
        sphere="results/sphere.json",
    log:
        "logs/sphere.log",
    conda:
        "../../envs/coemu.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        config=stage_config("sphere"),
        code=CODE["cubes"],
    shell:
        "coemu sphere {output.sphere:q} --config {params.config:q} > {log:q} 2>&1"
