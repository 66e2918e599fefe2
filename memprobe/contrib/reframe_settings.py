"""A ReFrame configuration (ReFrame >= 4.5) to run memprobe's check with, or to copy into a
site's own: two systems, chosen with `--system`.

- `local`: this machine, no scheduler (ReFrame's local scheduler and launcher).
- `slurm`: the Slurm cluster this machine submits to, one partition, jobs launched with
  `srun`. Its scheduler is ReFrame's `squeue` backend (submits with sbatch, polls with
  squeue), which needs no Slurm accounting; set `MEMPROBE_RFM_SCHEDULER=slurm` on a cluster
  with accounting (slurmdbd) to poll with sacct instead. `MEMPROBE_RFM_ACCESS` adds sbatch
  options, space-separated (for instance `--partition=debug`).

    reframe -C memprobe/contrib/reframe_settings.py --system slurm \\
        -c memprobe/contrib/reframe_check.py -r

ReFrame's built-in environment (`builtin`) and logging stay in force: the performance log goes to
`perflogs/<system>/<partition>/MemprobeScanCheck.log` under the prefix (`--prefix`).
"""

import os

site_configuration = {
    "systems": [
        {
            "name": "local",
            "descr": "this machine, without a scheduler",
            "hostnames": [".*"],
            "partitions": [
                {
                    "name": "default",
                    "descr": "local processes",
                    "scheduler": "local",
                    "launcher": "local",
                    "environs": ["builtin"],
                    "max_jobs": 1,
                }
            ],
        },
        {
            "name": "slurm",
            "descr": "a Slurm cluster: sbatch, srun",
            "hostnames": [".*"],
            "partitions": [
                {
                    "name": "default",
                    "descr": "the default partition (or the one MEMPROBE_RFM_ACCESS names)",
                    "scheduler": os.environ.get("MEMPROBE_RFM_SCHEDULER", "squeue"),
                    "launcher": "srun",
                    "access": os.environ.get("MEMPROBE_RFM_ACCESS", "").split(),
                    "environs": ["builtin"],
                    "max_jobs": 64,
                }
            ],
        },
    ],
    # the environment "builtin" (no modules, the system's compilers) is ReFrame's own
}
