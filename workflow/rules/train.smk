# Training of every emulator kind (training.model.kind) in two stages (paper sections
# 2.5.2-2.5.3): pretraining on face-on single-channel images, then fine-tuning on every
# rotation and channel from the same kind's pretrained model; DDP under torchrun.
# model.pt is the declared output; checkpoints/ is not, so a rerun or a retry resumes
# from it.


rule train:
    input:
        pretrained=pretrained_model,
        split=rules.split.output.split,
        stats=rules.stats.output.stats,
        blocks=manifests("images"),
    output:
        model="results/train/{kind}/{stage}/model.pt",
        history="results/train/{kind}/{stage}/history.csv",
    log:
        "logs/train/{kind}/{stage}.log",
    benchmark:
        "benchmarks/train/{kind}/{stage}.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=TRAIN["mem_mb"],
        runtime=lambda w: TRAIN[w.stage]["runtime"],
        gpu=TRAIN_GPUS,
        cpus_per_gpu=TRAIN_CPUS_PER_GPU,
    params:
        init=lambda w, input: (
            ["--init", *input.pretrained] if input.pretrained else []
        ),
        out=lambda w, output: os.path.dirname(output.model),
        nproc=TRAIN_NPROC,
        config=lambda w: stage_config(w.stage, w.kind),
        signals=TORCHRUN_SIGNALS,
        code=CODE["training"],
    shell:
        "OMP_NUM_THREADS=$(( {threads} / {params.nproc} > 0 ? {threads} / {params.nproc} : 1 ))"
        " torchrun --standalone --nproc-per-node {params.nproc}"
        " --signals-to-handle {params.signals} --no-python coemu train --stage {wildcards.stage}"
        " --split {input.split:q} --stats {input.stats:q} --manifests {input.blocks:q}"
        " --out {params.out:q} {params.init:q} --kind {wildcards.kind:q}"
        " --config {params.config:q} --no-progress > {log:q} 2>&1"
