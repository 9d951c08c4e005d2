# Train/validation/test split by model (all rotations of a model in one part), drawn from
# the models the sphere stage listed.


rule split:
    input:
        sphere=rules.sphere.output.sphere,
    output:
        split="results/split.json",
    log:
        "logs/split.log",
    conda:
        "../../envs/coemu.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=stage_config("split"),
        code=CODE["stats"],
    shell:
        "coemu split {input.sphere:q} {output.split:q} --config {params.config:q} > {log:q} 2>&1"
