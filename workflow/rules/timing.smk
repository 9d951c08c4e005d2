# Timing of the pipeline's emulator (both stages) against the solver on the test models'
# cubes: milliseconds per sample on the CPU, and on CUDA when timing.device asks for it.


rule timing:
    input:
        models=expand(rules.train.output.model, kind=EMULATOR, stage=STAGES),
        split=rules.split.output.split,
        stats=rules.stats.output.stats,
        blocks=manifests("images"),
    output:
        csv=report(
            "results/timing/timing.csv",
            caption="../report/timing.rst",
            category="Timing",
        ),
        table="results/timing/timing.md",
    log:
        "logs/timing.log",
    benchmark:
        "benchmarks/timing.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=TIMING_GPUS,
        cpus_per_gpu=2 * TIMING_GPUS,
    params:
        out=lambda w, output: os.path.dirname(output.csv),
        config=stage_config("timing"),
        code=CODE["evaluation"],
    shell:
        "OMP_NUM_THREADS={threads} coemu timing --models {input.models:q} --split {input.split:q}"
        " --stats {input.stats:q} --manifests {input.blocks:q} --out {params.out:q}"
        " --config {params.config:q} > {log:q} 2>&1"
