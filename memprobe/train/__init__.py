"""Beside stage 4 of the flow (result -> **train** -> report): the training study. `network`
is the workload, `sweep` measures it against the scan's levels, `model` predicts each step from
the scan alone, so the report can show how the measured hierarchy shapes training speed."""
