"""Stage 3 of the flow (probe -> samples -> **inference** -> result -> report): levels and line
size from raw curves. Reads curves only, never the declared facts, so that a declared size can
be checked against the measurement instead of steering it. The method: docs/method.md."""

from memprobe.infer.levels import Hierarchy, InferenceError, InferredLevel, infer_levels

__all__ = ["Hierarchy", "InferenceError", "InferredLevel", "infer_levels"]
