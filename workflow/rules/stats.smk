# Global statistics of the training models on a Dask cluster (paper section 2.5.1);
# preprocessing uses them on the fly (coemu.data.transform).


rule stats:
    input:
        split=rules.split.output.split,
        blocks=manifests("images"),
    output:
        stats="results/stats/global.json",
    log:
        "logs/stats.log",
    benchmark:
        "benchmarks/stats.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: DASK_THREADS
    resources:
        mem_mb=DASK_MEM_MB,
        runtime=120,
    params:
        config=stage_config("stats"),
        code=CODE["stats"],
    shell:
        "coemu stats {input.split:q} {output.stats:q} --manifests {input.blocks:q}"
        " --config {params.config:q} > {log:q} 2>&1"
