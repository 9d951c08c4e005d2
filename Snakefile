# COEmu: hydro models -> rotated cubes -> images -> statistics -> training -> evaluation, timing
# Table of contents only; each stage lives in workflow/rules/, the logic in src/coemu.


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/cubes.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/timing.smk"
include: "workflow/rules/observations.smk"
include: "workflow/rules/fit.smk"


rule all:
    default_target: True
    input:
        manifests("images"),
        rules.split.output.split,
        rules.stats.output.stats,
        expand(rules.evaluate.output.metrics, kind=EMULATOR, stage=STAGES),
        rules.timing.output.csv,
        rules.compare_kinds.output.table if len(KINDS) > 1 else [],
        rules.observations.output.manifest if config["observations"]["export"] else [],
        rules.fit.output.summary if config["fit"]["enabled"] else [],
