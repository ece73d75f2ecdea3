"""Every trial and study attribute key datosearch writes, in one place.

Optuna user attributes are what exports, reports, optuna-dashboard and other workers read back, so
their names are defined here only; modules import the constants instead of spelling the strings.
"""

from __future__ import annotations

# ---- trial user attributes
ANCHOR_ATTR = "anchor"  # name of the anchor schedule an enqueued trial evaluates
KEY_ATTR = "schedule_key"  # `Schedule.key()`: what the accelerator does, for dedup
SCHEDULE_ATTR = "schedule"  # the schedule as a `datosearch/schedule@1`/`@2` dict
PLAN_ATTR = "exact_plan"  # an anchor outside the encoding's family: the schedule the trial evaluates
DEDUP_ATTR = "dedup_of"  # number of the trial whose evaluation this one reuses
FAIL_ATTR = "fail_reason"  # one line: why the trial failed
RETRY_ATTR = "retry_of"  # number of the interrupted trial this one repeats
WORKER_ATTR = "worker"  # `host:pid:start-ticks` of the process running the trial
DEVICE_ATTR = "device"  # device name the trial was measured on
DIGEST_ATTR = "images_digest"  # hash of the generated calibration images (8-bit pixels)
LATENCY_ATTR = "latency_s"  # median seconds of one timed generation
SPEEDUP_ATTR = "speedup"  # baseline latency / latency
MACS_ATTR = "macs"  # multiply-accumulates of one generation
OPERATOR_ATTR = "operator"  # what made the genes: "anchor", "seeded", "sampled", or the variation's operators
PARENTS_ATTR = "parents"  # trial numbers of the parents a bred trial's genes come from
PAIRED_PREFIX = "paired_"  # + metric name: paired image metrics against the reference (psnr, ssim)
# where a trial's genes and plan come from: a retry keeps them, a trial repeating a twin's schedule keeps its own
ORIGIN_ATTRS = (ANCHOR_ATTR, PLAN_ATTR, OPERATOR_ATTR, PARENTS_ATTR)

# ---- study user attributes
CONFIG_ATTR = "datosearch_config"  # the `StudyConfig` as JSON
BUDGET_ATTR = "datosearch_budget"  # COMPLETE trials the study should hold
ANCHORS_SKIPPED_ATTR = "anchors_skipped"  # anchors the encoding cannot express
COSTMODEL_ATTR = "datosearch_costmodel"  # the calibrated latency cost model (`CostModel.to_dict`)

TRIAL_ATTRS = (ANCHOR_ATTR, KEY_ATTR, SCHEDULE_ATTR, PLAN_ATTR, DEDUP_ATTR, FAIL_ATTR, RETRY_ATTR, WORKER_ATTR, DEVICE_ATTR,
               DIGEST_ATTR, LATENCY_ATTR, SPEEDUP_ATTR, MACS_ATTR, OPERATOR_ATTR, PARENTS_ATTR)
STUDY_ATTRS = (CONFIG_ATTR, BUDGET_ATTR, ANCHORS_SKIPPED_ATTR, COSTMODEL_ATTR)
