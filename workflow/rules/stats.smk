# Split by model, then global statistics of the training models on a Dask cluster
# (paper section 2.5.1); preprocessing uses them on the fly (coemu.data.transform).


rule split:
    input:
        sphere="results/sphere.json",
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
        split=split_args(),
        code=CODE["stats"],
    shell:
        "coemu split {input.sphere} {output.split} {params.split} > {log} 2>&1"


rule stats:
    input:
        split="results/split.json",
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
        dask=DASK_JSON,
        floors=PREPROCESSING_ARGS,
        code=CODE["stats"],
    shell:
        "coemu stats {input.split} {output.stats} --dask {params.dask} {params.floors} > {log} 2>&1"
