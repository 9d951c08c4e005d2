# Evaluation of each trained stage on the test models (paper section 2.5.5): per-sample
# MaxRel, ZNCC and SSIM, their summary and the figures.


rule evaluate:
    input:
        model="results/train/{stage}/model.pt",
        split="results/split.json",
        stats="results/stats/global.json",
        blocks=manifests("images"),
    output:
        metrics="results/evaluation/{stage}/metrics.json",
        samples="results/evaluation/{stage}/samples.nc",
        table=report(
            "results/evaluation/{stage}/table.md",
            caption="../report/table.rst",
            category="Evaluation",
            subcategory="{stage}",
        ),
        cdf=report(
            "results/evaluation/{stage}/cdf.png",
            caption="../report/cdf.rst",
            category="Evaluation",
            subcategory="{stage}",
        ),
        examples=report(
            "results/evaluation/{stage}/examples.png",
            caption="../report/examples.rst",
            category="Evaluation",
            subcategory="{stage}",
        ),
        spectra=report(
            "results/evaluation/{stage}/spectra.png",
            caption="../report/spectra.rst",
            category="Evaluation",
            subcategory="{stage}",
        ),
    log:
        "logs/evaluation/{stage}.log",
    benchmark:
        "benchmarks/evaluation/{stage}.tsv"
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
        " --split {input.split:q} --stats {input.stats:q} --manifests {input.blocks:q}"
        " --out {params.out:q} --config {params.config:q} > {log:q} 2>&1"


rule timing:
    input:
        models=expand("results/train/{stage}/model.pt", stage=["pretrain", "finetune"]),
        split="results/split.json",
        stats="results/stats/global.json",
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
