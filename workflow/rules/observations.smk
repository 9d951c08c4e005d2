# Observations: the test models' images as FITS cubes with a WCS, a beam and the
# configured unit, and their moment-0 maps (observations.export).


rule observations:
    input:
        split=rules.split.output.split,
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
