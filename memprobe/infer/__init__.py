"""Inference: levels, line size and ceilings from raw curves. Reads curves only, never the
declared facts."""

from memprobe.infer.levels import Hierarchy, InferenceError, InferredLevel, infer_levels

__all__ = ["Hierarchy", "InferenceError", "InferredLevel", "infer_levels"]
