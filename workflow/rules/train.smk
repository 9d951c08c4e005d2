# COEmuNet: pretraining on face-on single-channel images, then fine-tuning on every
# rotation and channel (paper sections 2.5.2-2.5.3), DDP under torchrun. model.pt is
# the declared output; checkpoints/ is not, so a rerun or a retry resumes from it.


rule pretrain:
    input:
        split="results/split.json",
        stats="results/stats/global.json",
        blocks=manifests("images"),
    output:
        model="results/train/pretrain/model.pt",
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
        init=lambda w, input: ["--init", input.pretrained],
        out=lambda w, output: os.path.dirname(output.model),
        nproc=TRAIN_NPROC,
        config=stage_config("finetune"),
        signals=TORCHRUN_SIGNALS,
        code=CODE["training"],
    shell:
        TRAIN_SHELL
