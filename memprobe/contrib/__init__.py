"""Glue for tools that schedule memprobe; nothing here is imported by memprobe itself.

- `reframe_check.py`: a ReFrame run-only check (`reframe -c .../reframe_check.py -r`) that
  runs `memprobe scan --quick --no-train` on a node and reports its key figures as performance
  variables, with references from a baseline scan. It imports ReFrame (`reframe-hpc`), which
  memprobe does not need otherwise.
- `reframe_settings.py`: a small ReFrame configuration to start from: a local system and a
  Slurm system (sbatch, srun).

See docs/cluster.md.
"""
