# COEmu: hydro models -> rotated cubes -> images -> statistics -> training -> evaluation, timing
# Table of contents only; each stage lives in workflow/rules/, the logic in src/coemu.


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/cubes.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    default_target: True
    input:
        manifests("images"),
        "results/split.json",
        "results/stats/global.json",
        expand(
            "results/evaluation/{stage}/metrics.json", stage=["pretrain", "finetune"]
        ),
        "results/timing/timing.csv",
        ["results/evaluation/kinds.md"] if OTHER_KINDS else [],
        (
            ["results/observations/manifest.json"]
            if config["observations"]["export"]
            else []
        ),
        ["results/fit/summary.json"] if config["fit"]["enabled"] else [],
