# The emulator (training.model.kind): pretraining on face-on single-channel images, then
# fine-tuning on every rotation and channel (paper sections 2.5.2-2.5.3), DDP under
# torchrun. model.pt is the declared output; checkpoints/ is not, so a rerun or a retry
# resumes from it. Every further configured kind: the same two stages, rule train_kind.


rule pretrain:
    input:
        split="results/split.json",
        stats="results/stats/global.json",
        blocks=manifests("images"),
    output:
        model="results/train/pretrain/model.pt",
        history="results/train/pretrain/history.csv",
    log:
        "logs/train/pretrain.log",
    benchmark:
        "benchmarks/train/pretrain.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["pretrain"]["runtime"],
        gpu=TRAIN_GPUS,
        cpus_per_gpu=TRAIN_CPUS_PER_GPU,
    params:
        stage="pretrain",
        kind=KINDS[0],
        init=[],
        out=lambda w, output: os.path.dirname(output.model),
        nproc=TRAIN_NPROC,
        config=stage_config("pretrain"),
        signals=TORCHRUN_SIGNALS,
        code=CODE["training"],
    shell:
        TRAIN_SHELL


rule finetune:
    input:
        pretrained="results/train/pretrain/model.pt",
        split="results/split.json",
        stats="results/stats/global.json",
        blocks=manifests("images"),
    output:
        model="results/train/finetune/model.pt",
        history="results/train/finetune/history.csv",
    log:
        "logs/train/finetune.log",
    benchmark:
        "benchmarks/train/finetune.tsv"
    conda:
        "../../envs/coemu.yaml"
    threads: TRAIN_THREADS
    resources:
        mem_mb=TRAIN["mem_mb"],
        runtime=TRAIN["finetune"]["runtime"],
        gpu=TRAIN_GPUS,
        cpus_per_gpu=TRAIN_CPUS_PER_GPU,
    params:
        stage="finetune",
        kind=KINDS[0],
        init=lambda w, input: ["--init", input.pretrained],
        out=lambda w, output: os.path.dirname(output.model),
        nproc=TRAIN_NPROC,
        config=stage_config("finetune"),
        signals=TORCHRUN_SIGNALS,
        code=CODE["training"],
    shell:
        TRAIN_SHELL


rule train_kind:
    input:
        unpack(pretrained_of),
        split="results/split.json",
        stats="results/stats/global.json",
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
        stage=lambda w: w.stage,
        kind=lambda w: w.kind,
        init=lambda w, input: (
            ["--init", input.pretrained] if w.stage == "finetune" else []
        ),
        out=lambda w, output: os.path.dirname(output.model),
        nproc=TRAIN_NPROC,
        config=lambda w: stage_config(w.stage, w.kind),
        signals=TORCHRUN_SIGNALS,
        code=CODE["training"],
    shell:
        TRAIN_SHELL
