# Evaluation of each trained stage on the test models (paper section 2.5.5): per-sample
# MaxRel, ZNCC and SSIM, their summary and the figures.


rule evaluate:
    input:
        model="results/train/{stage}/model.pt",
        history="results/train/{stage}/history.csv",
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
        loss=report(
            "results/evaluation/{stage}/loss.png",
            caption="../report/loss.rst",
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
        EVALUATE_SHELL


rule evaluate_kind:
    input:
        model="results/train/{kind}/{stage}/model.pt",
        history="results/train/{kind}/{stage}/history.csv",
        split="results/split.json",
        stats="results/stats/global.json",
        blocks=manifests("images"),
    output:
        metrics="results/evaluation/{kind}/{stage}/metrics.json",
        samples="results/evaluation/{kind}/{stage}/samples.nc",
        figures=multiext(
            "results/evaluation/{kind}/{stage}/",
            "table.md",
            "cdf.png",
            "examples.png",
            "spectra.png",
            "loss.png",
        ),
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
        EVALUATE_SHELL


rule compare_kinds:
    input:
        metrics=[
            f"{evaluation_dir(kind, stage)}/metrics.json"
            for stage in ("pretrain", "finetune")
            for kind in KINDS
        ],
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
    params:
        code=CODE["evaluation"],
    shell:
        "coemu compare {input.metrics:q} --out {output.table:q} > {log:q} 2>&1"


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


rule observations:
    input:
        split="results/split.json",
        blocks=manifests("images"),
    output:
        manifest="results/observations/manifest.json",
        moment0=report(
            "results/observations/moment0.png",
            caption="../report/observations.rst",
            category="Observations",
        ),
        channels=report(
            "results/observations/channels.png",
            caption="../report/observations.rst",
            category="Observations",
        ),
    log:
        "logs/observations.log",
    conda:
        "../../envs/coemu.yaml"
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        out=lambda w, output: os.path.dirname(output.manifest),
        config=stage_config("observations"),
        code=CODE["observations"],
    shell:
        "coemu export-observations --split {input.split:q} --manifests {input.blocks:q}"
        " --out {params.out:q} --config {params.config:q} > {log:q} 2>&1"


rule fit:
    input:
        observations="results/observations/manifest.json",
        emulator=(
            ["results/train/finetune/model.pt"]
            if config["fit"]["backend"] == "emulator"
            else []
        ),
    output:
        summary="results/fit/summary.json",
        table=report(
            "results/fit/summary.tsv", caption="../report/fit.rst", category="Fit"
        ),
        corner=report(
            expand(
                "results/fit/{family}.corner.png", family=config["fit"]["families"]
            ),
            caption="../report/fit.rst",
            category="Fit",
        ),
        channels=report(
            expand(
                "results/fit/{family}.channels.png", family=config["fit"]["families"]
            ),
            caption="../report/fit.rst",
            category="Fit",
        ),
    log:
        "logs/fit.log",
    benchmark:
        "benchmarks/fit.tsv"
    conda:
        "../../envs/coemu.yaml"
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        out=lambda w, output: os.path.dirname(output.summary),
        truth="--truth OBJECT" if config["models"]["source"] == "synthetic" else "",
        emulator=lambda w, input: (
            f"--emulator {input.emulator[0]!r}" if input.emulator else ""
        ),
        config=stage_config("fit"),
        code=CODE["fit"],
    shell:
        "coemu fit {input.observations:q} --out {params.out:q} {params.truth} {params.emulator}"
        " --config {params.config:q} > {log:q} 2>&1"
