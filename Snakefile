# unetseg: U-Net segmentation of microscopy and EM volumes (Ronneberger, Fischer & Brox 2015).
# Demo: `snakemake --cores all`; your data: edit config/config.yaml or pass --configfile.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo_data.smk"
include: "workflow/rules/chunk.smk"
include: "workflow/rules/weights.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


report: front_page()


# Light steps run on the submitting node when a cluster executor is used (report_volume reads a
# whole volume: a job of its own).
localrules:
    all,
    summarize,
    export_segmentation,
    view,
    report_data,
    report_augmentation,
    report_training,
    report_prediction,
    report_instances,
    report_metrics,
    report_run,


rule all:
    default_target: True
    input:
        final_outputs(),
