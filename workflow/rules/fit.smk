# Fit: the exported observation of the first test model fitted with each model family
# (MAP, posterior, evidence) and the Bayes factor between them (fit.enabled).


rule fit:
    input:
        observations=rules.observations.output.manifest,
        emulator=(
            expand(rules.train.output.model, kind=EMULATOR, stage="finetune")
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
            ["--emulator", *input.emulator] if input.emulator else []
        ),
        config=stage_config("fit"),
        code=CODE["fit"],
    shell:
        "coemu fit {input.observations:q} --out {params.out:q} {params.truth} {params.emulator:q}"
        " --config {params.config:q} > {log:q} 2>&1"
