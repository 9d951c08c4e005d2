# Evaluation of every kind's trained stages on the test models (paper section 2.5.5):
# per-sample MaxRel, ZNCC and SSIM, their summary and the figures; with more than one
# kind, a table that compares them.


rule evaluate:
    input:
        model=rules.train.output.model,
        history=rules.train.output.history,
        split=rules.split.output.split,
        stats=rules.stats.output.stats,
        blocks=manifests("images"),
    output:
        metrics="results/evaluation/{kind}/{stage}/metrics.json",
        samples="results/evaluation/{kind}/{stage}/samples.nc",
        table=evaluation_figure("table.md", "table"),
        cdf=evaluation_figure("cdf.png", "cdf"),
        examples=evaluation_figure("examples.png", "examples"),
        spectra=evaluation_figure("spectra.png", "spectra"),
        loss=evaluation_figure("loss.png", "loss"),
    log:
        "logs/evaluation/{kind}/{stage}.log",
    benchmark:
        "benchmarks/evaluation/{kind}/{stage}.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=EVALUATION_GPUS,
        cpus_per_gpu=2 * EVALUATION_GPUS,
    params:
        out=lambda w, output: os.path.dirname(output.metrics),
        config=stage_config("evaluation"),
        code=CODE["evaluation"],
    shell:
        "OMP_NUM_THREADS={threads} coemu evaluate --stage {wildcards.stage} --model {input.model:q}"
        " --history {input.history:q} --split {input.split:q} --stats {input.stats:q}"
        " --manifests {input.blocks:q} --out {params.out:q} --config {params.config:q}"
        " > {log:q} 2>&1"


rule compare_kinds:
    input:
        metrics=expand(rules.evaluate.output.metrics, stage=STAGES, kind=KINDS),
    output:
        table=report(
            "results/evaluation/kinds.md",
            caption="../report/kinds.rst",
            category="Evaluation",
        ),
    log:
        "logs/evaluation/kinds.log",
    conda:
        "../../envs/coemu.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=CODE["evaluation"],
    shell:
        "coemu compare {input.metrics:q} --out {output.table:q} > {log:q} 2>&1"
