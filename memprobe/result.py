"""Stage 4 of the flow (probe -> samples -> inference -> **result** -> report).

The result model: typed dataclasses that carry everything a scan measured, inferred and
declared, with a versioned JSON form and a JSON Schema generated from these types (shipped as
`memprobe/schema/memprobe-2.schema.json`). The report, `compare`, the CSV export and the tests
read only these records, so a saved scan from any machine re-renders the same way.

Format history (bump SCHEMA when a reader of the old form would misread the new one):
  memprobe/1  first version: per-device levels, curves, declared facts, compute ceilings,
              loaded latency, training study, top-level "complete" flag; declared, compute,
              extra and training were open dicts, notes and warnings free text.
  memprobe/2  every part typed: DeclaredCache (likwid's CacheLevel fields), ComputeCeilings
              (one shape for CPU and GPU, GFLOP/s), BandwidthTable, notes and warnings with a
              code, per-stage evidence as named records (DeviceExtra), the training study's
              points and GPU-over-CPU rows, the run plan in force in `settings`; a level's
              `size_range_bytes` became `size_interval_bytes` beside its `edge`. `load`
              still reads memprobe/1 files (upgraded in memory, see `_upgrade_v1`).
              Later, still memprobe/2 (an optional field, absent in older files): a device's
              `rates` (RateTable: the framework's per-op rates, for predicting a step from
              the scan alone).

Reading validates through pydantic's TypeAdapter over these plain dataclasses (one library
for checking, coercion and the JSON Schema, instead of a hand-written walker).
"""

from __future__ import annotations

import csv
import enum
import functools
import io
import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from memprobe.probes.kernels import CACHED_KERNEL_NAMES, STREAM_KERNELS

SCHEMA = "memprobe/2"
READABLE_SCHEMAS = ("memprobe/1", "memprobe/2")
BANDWIDTH_KERNELS = CACHED_KERNEL_NAMES  # the kernels every level has; *_nt at memory only
ALL_BANDWIDTH_KERNELS = tuple(k.name for k in STREAM_KERNELS)
THREAD_KEYS = ("threads_1", "threads_all")

# JSON scalars an open "facts" mapping may hold (NVML's answers, a plan's numbers)
Scalar = Optional[str | int | float | bool]


class SchemaError(ValueError):
    """A JSON document that is not a memprobe scan this version can read."""


# ---- messages: a code for code, a text for people ---------------------------------------------
class Code(str, enum.Enum):
    """What a note or warning is about. Code branches on these, never on the text."""

    # level notes
    UNSTABLE = "unstable"
    MEMORY_NOT_REACHED = "memory_not_reached"
    NEAR_MEMORY = "near_memory"  # a cache within MEMORY_SIDE_RATIO of memory's latency
    MEMORY_SIDE_CACHE = "memory_side_cache"  # the page-local chase confirmed it
    NOT_A_CACHE = "not_a_cache"  # the page-local chase merged it into memory
    MIXTURE_TAIL = "mixture_tail"  # a shelf between a cache and the next level read as part of the transition
    CACHE_OR_TLB = "cache_or_tlb"  # a step the curve cannot tell a cache from a TLB's reach
    TLB_STEP = "tlb_step"  # a step the huge-page run lacks: a TLB's reach, folded into the cache
    PAGE_LOCAL_MEMORY = "page_local_memory"
    DEVICE_MEMORY = "device_memory"
    L1_BYPASS_EDGE = "l1_bypass_edge"
    NEAR_FAR_L2 = "near_far_l2"
    SHARING = "sharing"
    BANDWIDTH_SCOPE = "bandwidth_scope"
    # warnings
    STAGE_FAILED = "stage_failed"
    INTERRUPTED = "interrupted"
    STEAL = "steal"
    SWEEP_BUDGET = "sweep_budget"
    SWEEP_MEMORY = "sweep_memory"
    NO_MEMORY = "no_memory"
    LINE_SIZE_DISAGREE = "line_size_disagree"
    INFERENCE = "inference"
    NO_GPU = "no_gpu"
    SIMULATOR = "simulator"
    NOT_MEASURED = "not_measured"
    NO_GEMM = "no_gemm"
    TRAINING = "training"
    IMPLAUSIBLE = "implausible"  # figures that break physics: flagged, never a roof
    CONTENTION = "contention"  # a neighbour was busy beside a stage
    # flags on single figures (memprobe/infer/plausibility.py)
    STREAMING_ABOVE_RFO = "streaming_above_rfo"
    FARTHER_FASTER = "farther_faster"
    LATENCY_ORDER = "latency_order"
    ABOVE_ISA_PEAK = "above_isa_peak"
    ALL_BELOW_ONE = "all_below_one"
    LEGACY = "legacy"  # a memprobe/1 message, upgraded: its text only


@dataclass
class Note:
    """A fact about one level, for people (`text`), tagged for code (`code`)."""

    code: Code
    text: str


@dataclass
class ScanWarning:
    """Something that may make a figure wrong, for people (`text`), tagged for code (`code`).
    `stage`: the stage it came from, when one did."""

    code: Code
    text: str
    stage: Optional[str] = None


@dataclass
class Flag:
    """A figure that breaks physics, or ran beside a busy neighbour: shown with its reason,
    never used as a roof or a model input. `figure`: "bandwidth/<kernel>/<threads>",
    "latency", or on compute ceilings "fma/<dtype>/<threads>"."""

    code: Code
    figure: str
    value: Optional[float]
    reason: str


# ---- curves --------------------------------------------------------------------------------------
@dataclass
class CurvePoint:
    """One x value of a sweep with every repetition kept (the noise stays visible)."""

    x: float
    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def best(self) -> float:
        """Lowest sample: for latency, contention from other tenants only ever adds time."""
        return min(self.samples) if self.samples else math.nan

    @property
    def low(self) -> float:
        """25th percentile of the samples (linear interpolation, as NumPy's default). Level
        inference reads this on the CPU: the minimum picks one lucky page placement, the median
        follows a neighbour busy for a whole pass; the lower quartile does neither
        (docs/method.md, "Recheck passes and the lower quartile")."""
        if not self.samples:
            return math.nan
        if len(self.samples) == 1:
            return float(self.samples[0])
        return statistics.quantiles(self.samples, n=4, method="inclusive")[0]

    @property
    def spread(self) -> float:
        """Relative spread (max-min)/median of the repetitions; 0 for a single sample."""
        if len(self.samples) < 2:
            return 0.0
        med = self.median
        return (max(self.samples) - min(self.samples)) / med if med else math.nan


@dataclass
class Curve:
    """A raw sweep: what a probe returned, converted to a unit, decided nothing. `params` holds
    how it was taken (method, page kind, launch shapes): descriptive, read by people."""

    name: str  # e.g. "latency_hugepage", "bandwidth_triad_threads_all"
    kind: str  # "latency" | "bandwidth" | "stride" | "loaded_latency" | "transfer" | ...
    x_name: str  # "size_bytes", "stride_bytes", ...
    unit: str  # "ns", "cycles", "GB/s"
    points: list[CurvePoint] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def xs(self) -> list[float]:
        return [p.x for p in self.points]

    def medians(self) -> list[float]:
        return [p.median for p in self.points]

    def bests(self) -> list[float]:
        return [p.best for p in self.points]

    def lows(self) -> list[float]:
        return [p.low for p in self.points]


# ---- levels ----------------------------------------------------------------------------------
@dataclass
class Level:
    """One level of the hierarchy as measured; the last one of a device is main memory.

    `bandwidth_gbs` is {kernel: {"threads_1": GB/s, "threads_all": GB/s}} (the statistic is
    the device's BandwidthTable.statistic). `size_interval_bytes`: the capacities the curve
    cannot tell apart; `edge`: the transition shape that fitted best ("sharp", "random",
    "page-colour", "logistic", or "bracket" where too few points lay between the plateaus to fit)."""

    name: str  # "L1", "L2", ... nearest first; "memory" for the last
    size_bytes: Optional[int]  # the capacity fitted on the latency curve's edge; None for memory
    latency_ns: Optional[float]  # the plateau's latency: the median over its sizes of each size's lower quartile
    latency_cycles: Optional[float]  # latency_ns times the measured core clock
    # {kernel: {"threads_1", "threads_all"}}: the best sample at working sets inside the level
    bandwidth_gbs: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)
    latency_spread: float = 0.0  # relative spread of the plateau's points
    unstable: bool = False  # spread too wide to trust
    size_interval_bytes: Optional[list[int]] = None
    edge: Optional[str] = None  # the fitted transition shape (memprobe/infer/edges.py); None for memory
    sharing: Optional[str] = None  # "private" | "shared" | "undetermined" | None (not measured)
    notes: list[Note] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)

    def flagged(self, figure: str) -> Optional[Flag]:
        return next((f for f in self.flags if f.figure == figure), None)

    def note(self, code: Code, text: str) -> None:
        self.notes.append(Note(code, text))

    def has_note(self, code: Code) -> bool:
        return any(n.code == code for n in self.notes)

    def drop_notes(self, code: Code) -> None:
        self.notes[:] = [n for n in self.notes if n.code != code]


# ---- declared facts ----------------------------------------------------------------------------
@dataclass
class DeclaredCache:
    """One cache as the OS or driver declares it: likwid's CacheLevel fields (level, type,
    size, line size, ways, shared by)."""

    level: int
    type: str  # "Data" | "Instruction" | "Unified"
    size_bytes: Optional[int]
    line_size_bytes: Optional[int] = None
    ways: Optional[int] = None
    shared_by_cpus: Optional[int] = None
    shared_cpu_list: Optional[str] = None
    scope: Optional[str] = None  # GPU: "per SM" | "shared by all SMs"

    @property
    def label(self) -> str:
        return f"L{self.level}{'d' if self.type == 'Data' else ''}"


@dataclass
class CpuFacts:
    vendor: Optional[str] = None
    arch: Optional[str] = None
    flags: list[str] = field(default_factory=list)
    hz_advertised: Optional[float] = None
    transparent_hugepage: Optional[str] = None


@dataclass
class GpuFacts:
    compute_capability: Optional[str] = None
    sm_count: Optional[int] = None
    max_threads_per_sm: Optional[int] = None
    max_threads_per_block: Optional[int] = None
    max_blocks_per_sm: Optional[int] = None
    registers_per_sm: Optional[int] = None
    warp_size: Optional[int] = None
    max_clock_khz: Optional[int] = None
    memory_clock_khz: Optional[int] = None
    memory_bus_width_bits: Optional[int] = None
    l2_persisting_max_bytes: Optional[int] = None
    pci_bus_id: Optional[int] = None
    shared_per_block_bytes: Optional[int] = None
    shared_per_block_optin_bytes: Optional[int] = None
    shared_per_sm_bytes: Optional[int] = None
    l1_shared_unified_per_sm_bytes: Optional[int] = None
    l1_min_bytes: Optional[int] = None
    fp32_lanes_per_sm: Optional[int] = None
    theoretical_memory_gbs: Optional[float] = None
    memory_free_bytes: Optional[int] = None
    nvml: dict[str, Scalar] = field(default_factory=dict)


@dataclass
class Declared:
    """What the machine says about a device, shown beside the measurement, never read by
    inference. One shape for CPU and GPU; the device-specific facts sit in `cpu` or `gpu`."""

    source: str = ""
    model: Optional[str] = None
    caches: list[DeclaredCache] = field(default_factory=list)  # instruction caches too
    cores_logical: Optional[int] = None  # GPU: SMs
    cores_physical: Optional[int] = None
    cores_usable: Optional[int] = None
    memory_total_bytes: Optional[int] = None
    memory_available_bytes: Optional[int] = None
    clock_ghz: Optional[float] = None  # advertised / maximum, never used for cycles
    fma_flops_per_cycle: dict[str, Optional[int]] = field(default_factory=dict)  # dtype -> per core / SM
    cpu: Optional[CpuFacts] = None
    gpu: Optional[GpuFacts] = None
    error: Optional[str] = None

    def data_caches(self) -> list[DeclaredCache]:
        """The data path (no instruction caches), nearest first: what a chase can see."""
        return sorted((c for c in self.caches if c.type != "Instruction" and c.size_bytes),
                      key=lambda c: (c.level, c.size_bytes or 0))


# ---- ceilings ----------------------------------------------------------------------------------
@dataclass
class GemmCeiling:
    library: str
    dtype: str
    n: int
    gflops: Optional[float]
    samples: list[float] = field(default_factory=list)
    threads: str = "all"


@dataclass
class TheoreticalPeak:
    """Declared FMA width x measured clock x units: drawn beside, never a roof."""

    clock_ghz: Optional[float]
    units: int  # cores or SMs
    flops_per_cycle_per_unit: dict[str, Optional[int]] = field(default_factory=dict)
    gflops: dict[str, Optional[float]] = field(default_factory=dict)  # dtype -> GFLOP/s


@dataclass
class ComputeCeilings:
    """One shape for CPU and GPU: `fma` is {dtype: {"threads_1"|"threads_all": GFLOP/s}},
    `gemm` the library products. A GPU's threads_1 is one block on one SM."""

    fma: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)
    fma_samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    gemm: list[GemmCeiling] = field(default_factory=list)
    statistic: str = "best"
    method: str = ""
    verified: Optional[bool] = None
    clock_ghz_during_fma: Optional[float] = None
    theoretical: Optional[TheoreticalPeak] = None
    flags: list[Flag] = field(default_factory=list)

    def flagged(self, figure: str) -> Optional[Flag]:
        return next((f for f in self.flags if f.figure == figure), None)


@dataclass
class BandwidthSetup:
    """How one level's bandwidth was taken: working sets for one thread and all threads."""

    level: str
    size_bytes_threads_1: int
    size_bytes_threads_all: int
    threads_all: int
    samples_threads_all_off_curve: Optional[dict[str, list[float]]] = None
    array_bytes: Optional[int] = None  # memory: each array (STREAM's rule); the sizes above are triad's
    # a cache: the sizes whose samples the roof is the best of (one thread; all threads too
    # unless taken off the curve), the size above being their centre
    size_range_bytes: Optional[list[int]] = None
    # a second round at the end of the scan (stage bandwidth_recheck), per kernel and thread
    # count ("threads_1", "threads_all"), in GB/s: at the working sets above (memory: its
    # STREAM-sized arrays), so that the figure's samples span the scan's time, not a few ms
    samples_recheck: Optional[dict[str, dict[str, list[float]]]] = None


@dataclass
class BandwidthTable:
    """Where the levels' `bandwidth_gbs` figures come from. `statistic`: which repetition a
    figure is ("best": a ceiling; other tenants only ever slow a run)."""

    statistic: str = "best"
    counting: str = "STREAM (bytes read + bytes written)"
    threads_1: str = "one thread"
    threads_all: str = "all usable CPUs"
    item: str = "float64"
    levels: list[BandwidthSetup] = field(default_factory=list)
    verified: dict[str, bool] = field(default_factory=dict)

    def setup(self, level: str) -> Optional[BandwidthSetup]:
        return next((s for s in self.levels if s.level == level), None)


@dataclass
class LoadedLatencyPoint:
    streaming_threads: int
    kernel: str
    bandwidth_gbs: float
    latency_ns: Optional[float]
    latency_median_ns: Optional[float] = None
    samples_ns: list[float] = field(default_factory=list)
    bytes_per_element: Optional[int] = None


# ---- per-stage evidence ------------------------------------------------------------------------
@dataclass
class LineSizeEvidence:
    false_sharing_bytes: Optional[int] = None
    stride_sweep_bytes: Optional[int] = None


@dataclass
class PageLocalMemory:
    size_bytes: int
    latency_ns: float


@dataclass
class MemorySideCheck:
    level: str
    size_bytes: int
    inside_bytes: int
    beyond_bytes: int
    inside_ns: float
    beyond_ns: float
    ratio: float
    verdict: str  # "cache" | "page walks"


@dataclass
class SharingEvidence:
    """Private or shared, measured: one unit (core, SM) alone against all of them at once."""

    level: str
    size_bytes: int  # working set per unit
    other_units: int  # other threads (CPU) or SMs (GPU) loading at once
    unit: str = "ns"  # of the latencies: "ns" | "cycles"
    latency_alone: Optional[float] = None
    latency_loaded: Optional[float] = None
    ratio: Optional[float] = None
    threshold: Optional[float] = None  # ratio above which the level is shared
    verdict: Optional[str] = None  # "private" | "shared" | None (not decided)
    samples_alone: list[float] = field(default_factory=list)
    samples_loaded: list[float] = field(default_factory=list)
    declared_shared_cpu_list: Optional[str] = None
    level_size_bytes: Optional[int] = None
    level_size_source: Optional[str] = None
    bw_scaling_all_vs_1: Optional[float] = None
    note: Optional[str] = None
    # capacity alone against capacity under load (CPU): a sweep across the level's edge, each
    # latency the best repetition at that size, and the capacities fitted on each with intervals
    sweep_sizes_bytes: list[int] = field(default_factory=list)
    sweep_alone: list[float] = field(default_factory=list)
    sweep_loaded: list[float] = field(default_factory=list)
    capacity_alone_bytes: Optional[int] = None
    capacity_alone_interval_bytes: Optional[list[int]] = None
    capacity_loaded_bytes: Optional[int] = None
    capacity_loaded_interval_bytes: Optional[list[int]] = None
    shared_share_bytes: Optional[int] = None  # what each unit would keep of a shared level


@dataclass
class BypassLevel:
    """A level of the GPU's L1-bypass (ld.global.cg) curve."""

    name: str
    size_bytes: Optional[int]
    latency_cycles: Optional[float]
    latency_ns: Optional[float] = None
    unstable: bool = False
    size_interval_bytes: Optional[list[int]] = None


@dataclass
class L2PartitionSm:
    sm: int
    hops: int
    timer_overhead_cycles: float
    threshold_cycles: Optional[float]
    near_cycles: Optional[float]
    far_cycles: Optional[float]
    near_fraction: float
    ratio: float
    split_seen: bool
    near_ns: Optional[float] = None
    far_ns: Optional[float] = None


@dataclass
class L2PartitionPair:
    sm_a: int
    sm_b: int
    addresses_classed_differently: float


@dataclass
class L2Partitions:
    """Near and far L2 halves: per-hop latency from several SMs over the same chain."""

    buffer_bytes: int
    load: str
    sms: list[L2PartitionSm] = field(default_factory=list)
    pairs: list[L2PartitionPair] = field(default_factory=list)
    note: str = ""

    def seen(self) -> list[L2PartitionSm]:
        return [s for s in self.sms if s.split_seen]


@dataclass
class SharedMemory:
    verified: bool
    latency_cycles: Optional[float]
    latency_ns: Optional[float]
    read_gbs: Optional[float]
    bytes_per_clock_per_sm: Optional[float] = None
    declared_per_block_bytes: Optional[int] = None
    declared_per_block_optin_bytes: Optional[int] = None
    declared_per_sm_bytes: Optional[int] = None


@dataclass
class HostLink:
    """Host<->device copies: peak GB/s per direction and host memory kind."""

    verified: Optional[bool]
    peak_gbs: dict[str, Optional[float]] = field(default_factory=dict)  # "h2d_pinned" -> GB/s


@dataclass
class DeviceExtra:
    """Evidence of single stages, each a named record (None: the stage did not run)."""

    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_steal_percent: dict[str, float] = field(default_factory=dict)
    steal_notable_percent: Optional[float] = None  # a stage's steal above this is warned about
    # other processes of this machine beside each stage, % of one CPU, and the load average
    stage_others_percent: dict[str, float] = field(default_factory=dict)
    stage_load_average: dict[str, float] = field(default_factory=dict)
    others_notable_percent: Optional[float] = None
    line_size: Optional[LineSizeEvidence] = None
    tlb_reach_4k_bytes: Optional[int] = None
    memory_page_local: Optional[PageLocalMemory] = None
    memory_side_checks: list[MemorySideCheck] = field(default_factory=list)
    sharing: dict[str, SharingEvidence] = field(default_factory=dict)
    primary_latency_curve: Optional[str] = None
    l1_bypass_levels: list[BypassLevel] = field(default_factory=list)
    l2_partitions: Optional[L2Partitions] = None
    shared_memory: Optional[SharedMemory] = None
    host_link: Optional[HostLink] = None


# ---- rate table: the framework's per-op rates on this device ----------------------------------
# element-wise classes of a captured step (train/rates_from_scan.op_class says which op is which)
# "transcendental": an activation built on exp, erf or tanh (GELU, SiLU, sigmoid...), many times an
# addition's cost per element; "random": a random fill (dropout's mask), its generator's cost
RATE_CLASSES = ("elementwise", "reduction", "norm", "softmax", "gather", "copy", "update", "transcendental",
                "random")
# call-overhead classes: the GEMM-like ops, the element-wise classes, and a bare call (an allocation)
OVERHEAD_CLASSES = ("gemm", "bmm", "conv", "attention") + RATE_CLASSES + ("call",)


@dataclass
class GemmRate:
    """One matrix product measured alone: (`batch` x) an m x k by k x n product, GFLOP/s with the
    call's overhead taken out (`call_s`: seconds per call, overhead in)."""

    m: int
    n: int
    k: int
    dtype: str
    gflops: Optional[float]
    call_s: Optional[float] = None
    batch: int = 1  # batched matmul: products per call


@dataclass
class ConvRate:
    """One 2-D convolution measured alone, forward or backward (input and weight gradients),
    with its GEMM-equivalent m (batch x output pixels), n (output channels), k (input channels
    x kernel area) by which a captured convolution finds its nearest entry."""

    batch: int
    c_in: int
    c_out: int
    hw: int
    kernel: int
    stride: int
    direction: str  # "forward" | "backward"
    dtype: str
    m: int
    n: int
    k: int
    gflops: Optional[float]
    call_s: Optional[float] = None


@dataclass
class AttentionRate:
    """Scaled dot-product attention measured alone (PyTorch's fused CPU kernel), forward or
    backward: `batch` (batch x heads), `seq` queries and keys, `head_dim`, causal or not; FLOPs
    by torch.utils.flop_counter's attention formulas (what `capture` counts)."""

    batch: int
    seq: int
    head_dim: int
    causal: bool
    direction: str  # "forward" | "backward"
    dtype: str
    gflops: Optional[float]
    call_s: Optional[float] = None


@dataclass
class ClassRate:
    """An element-wise class at one level: its kernel with every operand (`size_bytes` in all)
    sized to sit in `level`; elements per second and GB/s of its operands (STREAM counting),
    the call's overhead taken out."""

    level: str
    size_bytes: int
    elements_per_s: Optional[float]
    gbs: Optional[float]
    bytes_per_element: float  # its kernel's operand bytes per element counted
    call_s: Optional[float] = None


@dataclass
class ThreadRates:
    """The rate table at one thread count."""

    threads: int
    call_overhead_s: dict[str, Optional[float]] = field(default_factory=dict)  # OVERHEAD_CLASSES
    gemm: list[GemmRate] = field(default_factory=list)
    bmm: list[GemmRate] = field(default_factory=list)
    conv: list[ConvRate] = field(default_factory=list)
    attention: list[AttentionRate] = field(default_factory=list)
    classes: dict[str, list[ClassRate]] = field(default_factory=dict)  # RATE_CLASSES -> nearest level first
    # transcendental operators measured one by one ("tanh" -> nearest level first): per element
    # they cost from a multiply's to several times the class's own kernel (a GELU)
    operators: dict[str, list[ClassRate]] = field(default_factory=dict)
    backward_call_s: Optional[float] = None  # autograd's start, once per backward call
    fault_s_per_byte: Optional[float] = None  # a fresh page's cost beyond writing it
    cross_core_s_per_byte: Optional[float] = None  # several threads: an operand one core just wrote
    update_call_s: dict[str, list[float]] = field(default_factory=dict)  # optimizer -> [fixed s, s per tensor]


# the key under which the stored form of ModelInputs (a flat `overhead_s` dict, as scan.json's
# training.inputs keeps it) carries the cross-core figure beside the call overheads
_CROSS_CORE_KEY = "cross_core_s_per_byte"


@dataclass
class ModelInputs:
    """The per-machine terms a training-step prediction reads beside the scan's levels and the
    ops' rates, at one thread count: measured through the framework on this machine, each on
    tiny or isolated calls, never from a step time (train/model.py, train/predict.py read them)."""

    # the thread count in force when they were measured (the predictor's cross-core share needs it)
    threads: int = 1
    # seconds per call, by dispatch class ("gemm", "serial", "parallel", "kernel", "copyto") and
    # by kernel where measured ("serial:softmax_xent"): each call repeated alone on one-element
    # operands, times how much more the step's own call sequence costs on one-element operands
    # (train/sweep.in_step_overhead_factor)
    call_overhead_s: dict[str, float] = field(default_factory=dict)
    # seconds per byte a GEMM on several threads pays for an operand one core has just written
    # (the other threads read their part of it from that core's cache): the GEMM timed right after
    # one core rewrote its weights, less the same GEMM back to back, per byte the other threads
    # read (train/sweep.measure_cross_core_s_per_byte); 0.0 on one thread; None where it was not
    # measured (a GPU's sweep)
    cross_core_s_per_byte: Optional[float] = None
    # autograd's start, seconds once per backward call: the backward of a chain of one tiny op
    # against a chain of nine, the intercept (train/torch_rates.measure_backward_call_s)
    backward_call_s: float = 0.0
    # seconds per byte a fresh page costs beyond writing it: a large tensor allocated and filled
    # (its pages faulted in) against the same fill of one kept alive
    # (train/torch_rates.measure_fault_s_per_byte)
    fault_s_per_byte: float = 0.0
    # the optimizer's calls, as its own step costs them on tiny tensors: (seconds per step,
    # seconds per parameter tensor), its step on one and on nine tiny tensors, intercept and
    # slope (train/torch_rates.measure_update); None: each op's own overhead
    update_call_s: Optional[tuple[float, float]] = None

    @property
    def cross_core_or_zero_s_per_byte(self) -> float:
        """The cross-core figure as the predictor adds it (not measured: nothing added)."""
        return self.cross_core_s_per_byte or 0.0

    @classmethod
    def from_overhead_dict(cls, overhead_s: dict[str, float], threads: int = 1) -> "ModelInputs":
        """The MLP sweep's stored form (scan.json's training.inputs[device]["overhead_s"][threads
        key]: the call overheads and, under "cross_core_s_per_byte", the cross-core figure) as
        the record; the form scans have always stored, so every saved scan reads back."""
        if not isinstance(overhead_s, dict):
            raise TypeError(f"call overheads: expected a dict, got {type(overhead_s).__name__}")
        calls = {k: v for k, v in overhead_s.items() if k != _CROSS_CORE_KEY}
        return cls(threads=threads, call_overhead_s=calls, cross_core_s_per_byte=overhead_s.get(_CROSS_CORE_KEY))

    def overhead_dict(self) -> dict[str, float]:
        """The stored form `from_overhead_dict` reads (the cross-core figure only where measured)."""
        if self.cross_core_s_per_byte is None:
            return dict(self.call_overhead_s)
        return {**self.call_overhead_s, _CROSS_CORE_KEY: self.cross_core_s_per_byte}


@dataclass
class RateTable:
    """The rates a prediction of any captured training step needs on this device, measured through
    `library` on each op alone (memprobe/scan/rates.py): enough to predict a step for this machine
    from the scan alone (`memprobe predict SPEC --on scan.json`). `threads`: "threads_1" and
    "threads_all" (a GPU: "threads_all" only). `absent`: what was not measured and why, one line each
    (the element-wise classes need PyTorch). `statistic`: which repetition each figure is."""

    library: str  # "torch 2.13.0", "numpy/scipy-openblas 0.3.31"
    backend: str = "cpu"  # "cpu" | "cuda"
    statistic: str = "median"
    method: str = ""
    threads: dict[str, ThreadRates] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    seconds: Optional[float] = None


@dataclass
class DeviceResult:
    kind: str  # "cpu" | "gpu"
    name: str
    levels: list[Level] = field(default_factory=list)
    line_size_bytes: Optional[int] = None
    clock_ghz: Optional[float] = None  # measured, never the declared one
    declared: Declared = field(default_factory=Declared)
    curves: list[Curve] = field(default_factory=list)
    compute: Optional[ComputeCeilings] = None
    bandwidth: Optional[BandwidthTable] = None
    loaded_latency: list[LoadedLatencyPoint] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    extra: DeviceExtra = field(default_factory=DeviceExtra)
    # the framework's per-op rates (None: a scan from before rate tables, or the stage did not run)
    rates: Optional[RateTable] = None

    def curve(self, name: str) -> Optional[Curve]:
        return next((c for c in self.curves if c.name == name), None)

    def level(self, name: str) -> Optional[Level]:
        return next((lv for lv in self.levels if lv.name == name), None)

    def warn(self, code: Code, text: str, stage: Optional[str] = None) -> None:
        self.warnings.append(ScanWarning(code, text, stage))

    def drop_warnings(self, code: Code) -> None:
        self.warnings[:] = [w for w in self.warnings if w.code != code]


# ---- training study ----------------------------------------------------------------------------
@dataclass
class OpBreakdown:
    """One op of a predicted training step: its time (roofline + call overhead), what bounds it
    ("compute", a level's name, or "overhead") and the fraction of that ceiling achieved, with
    the measured step shared among the ops in proportion to their predicted times."""

    name: str
    time_s: float
    bound: str
    compute_s: Optional[float] = None
    memory_s: Optional[float] = None
    overhead_s: Optional[float] = None
    achieved_fraction: Optional[float] = None
    # the operands' time beyond what the op's rate paid for them (time_s = max(compute_s +
    # excess_s, memory_s) + overhead_s)
    excess_s: Optional[float] = None


@dataclass
class TrainingPoint:
    """One timed point of the training sweep beside the roofline model's prediction."""

    device: str
    level: str
    width: int
    layers: int
    batch: int
    threads: str
    n_threads: int
    working_set_bytes: int
    flops: float
    bytes: float
    measured_s: float
    predicted_s: float
    error: float
    capacity_multiple: Optional[float] = None
    measured_spread: Optional[float] = None
    samples_s: list[float] = field(default_factory=list)
    predicted_max_s: Optional[float] = None
    predicted_sum_s: Optional[float] = None
    error_max: Optional[float] = None
    error_sum: Optional[float] = None
    achieved_fraction: Optional[float] = None
    bound: Optional[str] = None
    compute_s: Optional[float] = None
    memory_s: Optional[float] = None
    overhead_s: Optional[float] = None
    levels_used: list[str] = field(default_factory=list)
    model: str = "mlp"
    miss_cause: Optional[str] = None  # off by more than 25 %: the likely cause (train/model.miss_cause)
    # the family's shape (cnn: batch, channels, resolution, blocks...; transformer: batch, seq,
    # width, heads, layers, vocab); width and layers above hold channels / width and blocks / layers
    spec: dict[str, int] = field(default_factory=dict)
    ops: list[OpBreakdown] = field(default_factory=list)  # the per-op breakdown (cnn, transformer)


@dataclass
class SpeedupRow:
    """The same network step on both devices: GPU over CPU (all CPU threads)."""

    width: int
    batch: int
    cpu_s: float
    gpu_s: float
    gpu_over_cpu: float


@dataclass
class EpochResult:
    """An MNIST-shaped epoch, measured and predicted."""

    device: str
    framework: str
    threads: int
    dims: list[int]
    batch: int
    samples: int
    steps: int
    samples_done: int
    complete: bool
    epoch_s: float
    samples_per_s: Optional[float] = None
    predicted_epoch_s: Optional[float] = None
    error: Optional[float] = None


@dataclass
class SeedRow:
    """One row of the seed table (the CPU-against-GPU table people quote): a full-size task's
    time on this machine projected from the scan's ceilings with the families' op model, a
    scaled-down real run of the same architecture that checks the projection, and the claim."""

    task: str  # "mnist_epoch" | "resnet50_epoch" | "gpt2_finetune"
    device: str  # "cpu" | "gpu"
    model: str  # the family that runs it: "mlp" | "cnn" | "transformer"
    workload: str  # what the full-size task is, in words (dataset, sizes, steps)
    predicted_s: Optional[float] = None  # the full-size task, projected
    check: str = ""  # the scaled-down check, in words (architecture, batch, sequence, steps)
    check_measured_s: Optional[float] = None  # per step of the check, measured (median)
    check_predicted_s: Optional[float] = None  # per step of the check, predicted the same way
    check_error: Optional[float] = None  # predicted / measured - 1
    claimed_s: Optional[float] = None  # the quoted figure for this device (8-core CPU, RTX 4090)
    claimed_hardware: str = ""
    bound: str = ""  # what bounds the task here: "compute" or a level's name
    bound_text: str = ""  # one sentence for the report
    threads: Optional[int] = None
    note: str = ""  # why a figure is missing, or a caveat


@dataclass
class Claim:
    """A published CPU-against-GPU claim beside what this machine shows for it."""

    id: str
    text: str
    finding: str = ""
    low: Optional[float] = None  # claimed GPU-over-CPU range
    high: Optional[float] = None
    measured_min: Optional[float] = None
    measured_max: Optional[float] = None
    cpu_s: Optional[float] = None  # claimed epoch times
    gpu_s: Optional[float] = None
    cpu_cores: Optional[int] = None
    cpu_epoch_s: Optional[float] = None  # measured here
    gpu_epoch_s: Optional[float] = None


@dataclass
class SkippedPoint:
    """A sweep point the study's time budget left out, and why."""

    device: str
    level: str
    width: int
    batch: int
    threads: str
    why: str
    layers: Optional[int] = None
    working_set_bytes: Optional[int] = None
    capacity_multiple: Optional[float] = None
    predicted_s: Optional[float] = None
    estimated_cost_s: Optional[float] = None
    model: str = "mlp"


@dataclass
class MlpRates:
    """The MLP sweep's measured rates at one thread count."""

    # rate class ("fwd", "bwd_data", "serial:softmax_xent"...) -> batch -> width -> GFLOP/s
    rates_gflops: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # each timed call: its class, shape, seconds per call and GFLOP/s (as the sweep wrote them)
    raw: list[dict[str, Union[str, int, float, None]]] = field(default_factory=list)


@dataclass
class MlpInputs:
    """The MLP sweep's measured inputs on one device, by thread key ("threads_1", "threads_all"),
    in the stored form the sweep has always written: the call overheads (with the cross-core
    figure beside them: `ModelInputs.from_overhead_dict` reads them) and the GEMM rates."""

    # threads key -> call overheads by dispatch class, seconds per call (and "cross_core_s_per_byte")
    overhead_s: Optional[dict[str, dict[str, float]]] = None
    # threads key -> the rates, each kernel measured alone at the sweep's sizes
    gemm_rates: Optional[dict[str, MlpRates]] = None


@dataclass
class UnmodelledOps:
    """Ops of a captured step the predictor could not model (train/predict.Unmodelled)."""

    name: str
    count: int
    time_s: Optional[float] = None  # their replays' sum; None where an op could not be replayed
    share: Optional[float] = None
    why: str = ""


@dataclass
class ReplayedOp:
    """One distinct kernel's rate as a family point read it (train/op_rates.OpRate's fields)."""

    key: str
    op: str
    call_s: Optional[float]  # seconds per call at its captured shape, page faults out; None: not replayed
    overhead_s: float  # the call's overhead, seconds
    work: float  # FLOPs for a GEMM, elements otherwise
    bytes: int  # distinct bytes its tensors span: the replay's footprint
    threads: int
    why: str = ""
    cold_call_s: Optional[float] = None  # one call after every cache was flushed, seconds


@dataclass
class PointInputs:
    """What one family point's prediction read beside the ops' rates: the capture, the per-step
    terms (`machine`), the calls' in-step scale, the coverage, and what could not be modelled."""

    spec: dict[str, int] = field(default_factory=dict)  # the network's sizes
    method: str = ""  # "captured", or "captured, rates from the scan" (a GPU point)
    kernels: Optional[int] = None
    distinct_ops: Optional[int] = None
    capture_s: Optional[float] = None
    machine: Optional[ModelInputs] = None
    fault_bytes: Optional[int] = None  # bytes the step's allocations fault in, per step (replayed)
    in_step_call_scale: Optional[float] = None  # train/inputs.in_step_call_scale
    coverage: Optional[float] = None  # the modelled share of the predicted step
    unmodelled: list[UnmodelledOps] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what the scan's rate table lacked (a GPU point)


@dataclass
class FamilyInputs:
    """A family sweep's inputs at one thread count: per point, and the rates its points read."""

    per_point: list[PointInputs] = field(default_factory=list)
    op_rates: list[ReplayedOp] = field(default_factory=list)


@dataclass
class TrainingStudy:
    """The training study: its points, what it left out, the MNIST epochs, the CPU-GPU pairing,
    the claims, the seed table, and the inputs its predictions read (the MLP's per device, the
    families' per device and family)."""

    points: list[TrainingPoint] = field(default_factory=list)
    skipped: list[SkippedPoint] = field(default_factory=list)
    mnist: dict[str, EpochResult] = field(default_factory=dict)
    speedup: list[SpeedupRow] = field(default_factory=list)
    gpu_wins_from_width: dict[str, Optional[int]] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    seed_table: list[SeedRow] = field(default_factory=list)
    summary: dict[str, Optional[float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, MlpInputs] = field(default_factory=dict)  # device -> the MLP sweep's inputs
    # "<device>/<family>" ("cpu/cnn") -> threads key -> the family sweep's inputs
    family_inputs: dict[str, dict[str, FamilyInputs]] = field(default_factory=dict)
    method: str = ""

    def device_points(self, device: Optional[str] = None) -> list[TrainingPoint]:
        return [p for p in self.points if device is None or p.device == device]

    @classmethod
    def from_parts(cls, parts: dict[str, Any]) -> "TrainingStudy":
        """The study from the train package's dict form (points, skipped, mnist, speedup,
        claims, summary, settings, method, and its inputs as overhead_s/gemm_rates by device)."""
        from pydantic import TypeAdapter

        return TypeAdapter(TrainingStudy).validate_python(_training_dict(parts))


# ---- the scan ----------------------------------------------------------------------------------
@dataclass
class ScanSettings:
    """The options asked for and the plan in force (sizes reached, repetitions, budgets)."""

    device: str = "cpu"
    quick: bool = False
    seed: int = 12345
    memprobe_version: str = ""
    repetitions: Optional[int] = None  # as asked (None: the plan's default)
    max_size_bytes: Optional[int] = None  # as asked (None: the sweep grows; see cpu_plan)
    train: bool = True
    fixture: Optional[str] = None  # set by the test-fixture script, shown in the report
    stopped_by: Optional[str] = None  # the signal that stopped the scan ("SIGINT", "SIGTERM", ...)
    waited_quiet_s: Optional[float] = None  # --wait-quiet: how long the scan waited before measuring
    # the CPU scan's plan in force (memprobe/profile.py's CpuPlan, with the sweep's top reached)
    cpu_plan: dict[str, Scalar | list[int | str]] = field(default_factory=dict)
    # the GPU scan's plan in force (scan/gpu.py's GpuPlan: the profile's numbers with the declared facts)
    gpu_plan: dict[str, Scalar | list[int | str]] = field(default_factory=dict)
    # the training study's schedule and budgets in force (memprobe/profile.py's TrainingPlan)
    training_plan: dict[str, Scalar | list[int | float]] = field(default_factory=dict)


@dataclass
class MachineFacts:
    """What makes scans of different machines comparable (or not); `check` and `compare` warn
    when they compare unlike things."""

    cpu_model: Optional[str] = None
    microcode: Optional[str] = None
    kernel: Optional[str] = None
    transparent_hugepage: Optional[str] = None
    governor: Optional[str] = None
    numa_nodes: Optional[int] = None
    virtual_machine: Optional[bool] = None


@dataclass
class LevelSummary:
    name: str
    size_bytes: Optional[int]
    latency_ns: Optional[float]


@dataclass
class ScanSummary:
    """One line per scan for a fleet (`memprobe scan --jsonl`, `memprobe compare` of many):
    the key figures, read from the full result by `ScanResult.summary()`."""

    host: str
    started_at: str
    complete: bool
    memprobe_version: str = ""
    cpu_model: Optional[str] = None
    levels: list[LevelSummary] = field(default_factory=list)  # the caches, nearest first
    memory_latency_ns: Optional[float] = None
    bandwidth_gbs: dict[str, Optional[float]] = field(default_factory=dict)  # "L1 read threads_all" -> GB/s
    fma_gflops: dict[str, Optional[float]] = field(default_factory=dict)  # "float64 threads_all" -> GFLOP/s
    virtual_machine: Optional[bool] = None
    # figure -> [low, high]: the figure's run-to-run band in this scan (memprobe/spread.py: the
    # figure +- the range of its samples; a cache's size: its interval), keyed as the fleet's
    # columns ("L1 size_bytes", "L1 latency_ns", "memory latency_ns", "L1 read threads_all",
    # "float64 threads_all"); absent in lines written before it was kept
    bands: dict[str, list[float]] = field(default_factory=dict)
    # the figures (same keys) whose stage ran beside busy neighbours by the scan's own record
    # (memprobe/spread.busy_text): they may read slow for a reason outside the machine
    busy: list[str] = field(default_factory=list)


@dataclass
class OpGroupPrediction:
    """One kind of operation of a predicted step (every call of one aten operator): what bounds
    most of its time ("compute" is its own measured rate, a level's name its bandwidth,
    "overhead" its calls), the level most of its bytes come from."""

    op: str
    count: int
    flops: float
    bytes: float
    level: Optional[str]
    bound: Optional[str]
    predicted_s: float
    share: float  # of the predicted step


@dataclass
class UnmodelledOp:
    """An operation the predictor could not model: named with its share, never counted as zero."""

    name: str
    count: int
    time_s: Optional[float]  # its calls replayed alone; None where it could not be replayed
    share: Optional[float]
    why: str = ""


@dataclass
class StepPrediction:
    """One network's training step predicted for this machine from this scan (`memprobe scan
    --predict SPEC`, memprobe/train/spec.py): the captured step's op groups, what bounds them,
    and what could not be modelled."""

    model: str
    spec: str  # as given: a file.py:function, a module:function or a built-in name
    batch: int
    threads: str  # "threads_1" | "threads_all"
    n_threads: int
    optimizer: str
    predicted_s: float
    coverage: float  # the modelled share of the predicted step
    bound: str
    flops: float
    bytes: float
    measured_s: Optional[float] = None
    flops_peak_s: Optional[float] = None  # the step's FLOPs at the scan's measured peak
    replay_sum_s: Optional[float] = None  # every captured kernel replayed alone, summed
    kernels: int = 0
    distinct_ops: int = 0
    peak_live_bytes: int = 0
    ops: list[OpGroupPrediction] = field(default_factory=list)
    unmodelled: list[UnmodelledOp] = field(default_factory=list)
    # each real step timed after warm-up, seconds (measured_s is their median); empty: not measured
    measured_samples_s: list[float] = field(default_factory=list)


@dataclass
class ScanResult:
    host: str
    started_at: str
    complete: bool = False
    duration_s: Optional[float] = None
    settings: ScanSettings = field(default_factory=ScanSettings)
    devices: dict[str, DeviceResult] = field(default_factory=dict)
    training: TrainingStudy = field(default_factory=TrainingStudy)
    warnings: list[ScanWarning] = field(default_factory=list)
    machine: MachineFacts = field(default_factory=MachineFacts)
    schema: str = SCHEMA
    predictions: list[StepPrediction] = field(default_factory=list)  # `scan --predict SPEC`

    def summary(self, device: str = "cpu") -> ScanSummary:
        """The key figures of one device (the CPU unless asked), flagged figures left out."""
        dev = self.devices.get(device)
        out = ScanSummary(host=self.host, started_at=self.started_at, complete=self.complete,
                          memprobe_version=self.settings.memprobe_version, cpu_model=self.machine.cpu_model,
                          virtual_machine=self.machine.virtual_machine)
        if dev is None:
            return out
        from memprobe import spread as S

        busy = {kind: bool(S.busy_text(dev, stages)) for kind, stages in
                (("latency", S.LATENCY_STAGES), ("bandwidth", S.BANDWIDTH_STAGES), ("compute", S.COMPUTE_STAGES))}

        def band(key: str, v: Optional[float], spread: float, kind: str = "") -> None:
            if v is not None and math.isfinite(v):
                out.bands[key] = [v - spread, v + spread]
                if busy.get(kind):
                    out.busy.append(key)

        for lv in dev.levels:
            if lv.size_bytes:
                out.levels.append(LevelSummary(lv.name, lv.size_bytes, lv.latency_ns))
                iv = S.size_interval(lv)
                if iv is not None:
                    out.bands[f"{lv.name} size_bytes"] = list(iv)
                band(f"{lv.name} latency_ns", lv.latency_ns, S.latency_spread_ns(lv), "latency")
            else:
                out.memory_latency_ns = lv.latency_ns
                band("memory latency_ns", lv.latency_ns, S.latency_spread_ns(lv), "latency")
            for kern, per in (lv.bandwidth_gbs or {}).items():
                for tk, v in per.items():
                    if v is not None and not lv.flagged(f"bandwidth/{kern}/{tk}"):
                        out.bandwidth_gbs[f"{lv.name} {kern} {tk}"] = v
                        band(f"{lv.name} {kern} {tk}", v, S.bandwidth_spread(dev, lv, kern, tk), "bandwidth")
        if dev.compute is not None:
            for dtype, per in dev.compute.fma.items():
                for tk, v in per.items():
                    if v is not None and not dev.compute.flagged(f"fma/{dtype}/{tk}"):
                        out.fma_gflops[f"{dtype} {tk}"] = v
                        band(f"{dtype} {tk}", v, S.fma_spread(dev, dtype, tk), "compute")
        return out

    def warn(self, code: Code, text: str, stage: Optional[str] = None) -> None:
        self.warnings.append(ScanWarning(code, text, stage))

    def all_warnings(self) -> list[tuple[str, ScanWarning]]:
        """(where, warning): the scan's own, then each device's."""
        out = [("scan", w) for w in self.warnings]
        for key, dev in self.devices.items():
            out += [(key, w) for w in dev.warnings]
        return out

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": self.schema,
            "host": self.host,
            "started_at": self.started_at,
            "complete": self.complete,
            "duration_s": self.duration_s,
            "settings": asdict(self.settings),
            "machine": asdict(self.machine),
            "warnings": [asdict(w) for w in self.warnings],
        }
        for key, dev in self.devices.items():
            out[key] = asdict(dev)
        out["training"] = asdict(self.training)
        if self.predictions:
            out["predictions"] = [asdict(p) for p in self.predictions]
        return _clean(out)

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Any) -> "ScanResult":
        if not isinstance(d, dict):
            raise SchemaError("not a memprobe scan: top level is not a JSON object")
        schema = d.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise SchemaError(f"not a memprobe scan this version reads: schema is {schema!r}, "
                              f"expected one of {', '.join(READABLE_SCHEMAS)}")
        if schema == "memprobe/1":
            try:
                d = _upgrade_v1(d)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise SchemaError(f"malformed memprobe/1 scan: {exc.__class__.__name__}: {exc}") from None
        from pydantic import ValidationError

        devices_in = {k: d[k] for k in ("cpu", "gpu") if d.get(k) is not None}
        body = {k: v for k, v in d.items() if k not in ("cpu", "gpu")}
        if "training" in body:
            body["training"] = _split_training_inputs(body["training"])
        body["devices"] = devices_in
        body["schema"] = SCHEMA
        try:
            return _adapter().validate_python(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SchemaError(f"malformed memprobe scan: {where}: {first['msg']} "
                              f"({exc.error_count()} problem(s))") from None

    @classmethod
    def from_json(cls, text: str) -> "ScanResult":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> "ScanResult":
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise SchemaError(f"cannot read {p}: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SchemaError(f"{p} is not a text file (binary content)") from None
        return cls.from_json(text)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    # ---- CSV ------------------------------------------------------------------------------
    def curves_csv(self) -> str:
        """Every raw curve in long form: one row per (device, curve, x), all samples kept."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["device", "curve", "kind", "x_name", "x", "unit", "median", "min", "max", "n", "samples"])
        for key, dev in self.devices.items():
            for c in dev.curves:
                for p in c.points:
                    s = p.samples
                    w.writerow([key, c.name, c.kind, c.x_name, _num(p.x), c.unit,
                                _num(p.median), _num(min(s)) if s else "", _num(max(s)) if s else "",
                                len(s), " ".join(_num(v) for v in s)])
        return buf.getvalue()


# ---- the JSON Schema -------------------------------------------------------------------------
def _forbid_unknown_keys() -> None:
    """Every record rejects keys it does not declare (pydantic reads `__pydantic_config__` on
    plain dataclasses), so the schema says `additionalProperties: false` and drift shows."""
    import dataclasses

    for obj in list(globals().values()):
        if isinstance(obj, type) and dataclasses.is_dataclass(obj):
            obj.__pydantic_config__ = {"extra": "forbid"}


_forbid_unknown_keys()


@functools.lru_cache(maxsize=1)
def _adapter():
    from pydantic import TypeAdapter

    return TypeAdapter(ScanResult)


# a field's unit, read from its name's suffix (units live in names: DESIGN.md)
UNIT_SUFFIXES = (
    ("_interval_bytes", "bytes, [low, high]"), ("_bytes", "bytes"), ("_ns", "nanoseconds"),
    ("_cycles", "core clock cycles, of the measured clock"), ("_gbs", "GB/s (1e9 bytes per second, STREAM "
     "counting: bytes read + bytes written)"), ("_gflops", "GFLOP/s"), ("_ghz", "GHz, measured"),
    ("_percent", "percent"), ("_s", "seconds"), ("_bps", "bytes per second"), ("_fraction", "a fraction, 0 to 1"),
)


@functools.lru_cache(maxsize=1)
def _field_comments() -> dict[tuple[str, str], str]:
    """{(class, field): the comment beside or above the field} for this module's dataclasses:
    the comments that explain a field become its description in the JSON Schema."""
    import ast
    import io
    import tokenize

    src = Path(__file__).read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    out: dict[tuple[str, str], str] = {}
    for node in ast.parse(src).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                n = item.lineno
                text = comments.get(item.end_lineno or n, "")
                above = []
                k = n - 1
                while k >= 1 and lines[k - 1].strip().startswith("#"):
                    above.insert(0, comments.get(k, ""))
                    k -= 1
                text = " ".join([t for t in above if t] + ([text] if text else []))
                if text:
                    out[(node.name, item.target.id)] = text
    return out


def _describe(schema: dict[str, Any]) -> None:
    """Give every property of the schema's records a description: its comment in this module
    and its unit from its name's suffix (statistic and meaning where a comment says them)."""
    comments = _field_comments()
    for cls, d in schema.get("$defs", {}).items():
        for name, prop in (d.get("properties") or {}).items():
            if "description" in prop:
                continue
            parts = []
            unit = next((u for suf, u in UNIT_SUFFIXES if name.endswith(suf)), None)
            if unit:
                parts.append(f"Unit: {unit}.")
            if (cls, name) in comments:
                parts.append(comments[(cls, name)][0].upper() + comments[(cls, name)][1:])
            if not parts:
                parts.append(f"{name.replace('_', ' ')} ({cls}).")
            prop["description"] = " ".join(parts)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a memprobe/2 scan.json, generated from these dataclasses (the file
    form: devices under "cpu" and "gpu" at the top level, not under "devices")."""
    from pydantic import TypeAdapter

    s = TypeAdapter(ScanResult).json_schema(mode="serialization")
    props = s["properties"]
    dev_ref = props.pop("devices")["additionalProperties"]
    props["cpu"] = dev_ref
    props["gpu"] = dev_ref
    props["schema"] = {"const": SCHEMA, "title": "Schema"}
    s["required"] = [r for r in s.get("required", []) if r != "devices"] + ["schema"]
    s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    s["title"] = f"memprobe scan ({SCHEMA})"
    s["additionalProperties"] = False
    _describe(s)
    return s


SCHEMA_FILE = Path(__file__).parent / "schema" / "memprobe-2.schema.json"


# ---- helpers ---------------------------------------------------------------------------------
def _num(v: float) -> str:
    """Exact: the shortest text that reads back as the same float (`memprobe infer` on a
    curves.csv must see what the scan saw), whole numbers without a fraction."""
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return str(v)


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null so every reader can parse the file; enums as
    their value."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k.value if isinstance(k, enum.Enum) else k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _legacy(texts: Any) -> list[dict[str, str]]:
    return [{"code": Code.LEGACY.value, "text": str(t)} for t in texts or []]


def _upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A memprobe/1 document in memprobe/2's shape: free-text notes and warnings become
    `legacy` messages, open dicts are read into their records where the keys are known
    (unknown keys are dropped: memprobe/1 wrote nothing a memprobe/2 reader needs)."""
    out = {k: d.get(k) for k in ("host", "started_at", "complete", "duration_s")}
    s = dict(d.get("settings") or {})
    out["settings"] = {k: s[k] for k in ("device", "quick", "seed", "memprobe_version", "repetitions",
                                         "max_size_bytes", "fixture") if s.get(k) is not None}
    out["warnings"] = _legacy(d.get("warnings"))
    for key in ("cpu", "gpu"):
        if d.get(key) is not None:
            out[key] = _upgrade_device_v1(d[key])
    out["training"] = _training_dict(d.get("training") or {})
    return out


def _pick(d: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: d[k] for k in keys if isinstance(d, dict) and k in d}


def _fields(cls) -> tuple[str, ...]:
    import dataclasses

    return tuple(f.name for f in dataclasses.fields(cls))


def _upgrade_device_v1(dev: dict[str, Any]) -> dict[str, Any]:
    levels = []
    for lv in dev.get("levels") or []:
        lv = dict(lv)
        lv["size_interval_bytes"] = lv.pop("size_range_bytes", None)
        lv["notes"] = _legacy(lv.get("notes"))
        levels.append(_pick(lv, _fields(Level)))
    dec = dev.get("declared") or {}
    kind = dev.get("kind", "cpu")
    declared: dict[str, Any] = {"source": dec.get("source", ""), "model": dec.get("model") or dec.get("name"),
                                "error": dec.get("error")}
    if kind == "cpu":
        declared["caches"] = [_pick(c, _fields(DeclaredCache)) for c in dec.get("caches") or []]
        declared.update(_pick(dec, ("cores_logical", "cores_physical", "cores_usable")))
        mem = dec.get("memory") or {}
        declared["memory_total_bytes"] = mem.get("total_bytes")
        declared["memory_available_bytes"] = mem.get("available_bytes")
        declared["fma_flops_per_cycle"] = {"float32": dec.get("fma_flops_per_cycle_fp32"),
                                           "float64": dec.get("fma_flops_per_cycle_fp64")}
        declared["cpu"] = _pick(dec, _fields(CpuFacts))
    else:
        gpu = _pick(dec, _fields(GpuFacts))
        gpu["nvml"] = {k: v for k, v in (dec.get("nvml") or {}).items() if not isinstance(v, (dict, list))}
        declared["gpu"] = gpu
        declared["cores_logical"] = dec.get("sm_count")
        declared["memory_total_bytes"] = dec.get("memory_total_bytes")
        declared["clock_ghz"] = dec.get("max_clock_ghz")
        caches = []
        if dec.get("l1_max_bytes"):
            caches.append({"level": 1, "type": "Data", "size_bytes": dec["l1_max_bytes"], "scope": "per SM"})
        l2 = dec.get("l2_size_bytes") or dec.get("l2_bytes")
        if l2:
            caches.append({"level": 2, "type": "Unified", "size_bytes": l2, "scope": "shared by all SMs"})
        declared["caches"] = caches
    comp = dev.get("compute") or {}
    compute = None
    if comp:
        fma = comp.get("fma") or {}
        if "fp32_fma" in comp:  # the v1 GPU scan's key
            fma = {"float32": {"threads_all": comp["fp32_fma"].get("gflops")}}
        gemm = []
        for g in comp.get("gemm") or []:
            gf = g.get("gflops")
            if gf is None and g.get("tflops") is not None:
                gf = 1e3 * g["tflops"]
            if gf is not None:
                gemm.append({"library": str(g.get("library", "BLAS")), "dtype": str(g.get("dtype", "")),
                             "n": int(g.get("n") or 0), "gflops": gf, "samples": g.get("samples") or [],
                             "threads": str(g.get("threads", "all"))})
        compute = {"fma": fma, "fma_samples": comp.get("fma_samples") or {}, "gemm": gemm,
                   "method": comp.get("fma_method", "")}
    ex = dev.get("extra") or {}
    extra: dict[str, Any] = _pick(ex, ("stage_seconds", "stage_steal_percent", "tlb_reach_4k_bytes",
                                       "memory_page_local", "memory_side_checks", "primary_latency_curve"))
    if isinstance(ex.get("line_size"), dict):
        extra["line_size"] = ex["line_size"]
    return {"kind": kind, "name": dev.get("name", kind.upper()), "levels": levels,
            "line_size_bytes": dev.get("line_size_bytes"), "clock_ghz": dev.get("clock_ghz"),
            "declared": declared, "curves": dev.get("curves") or [], "compute": compute,
            "loaded_latency": [_pick(r, _fields(LoadedLatencyPoint)) for r in dev.get("loaded_latency") or []],
            "warnings": _legacy(dev.get("warnings")), "extra": extra}


def _point_inputs(p: dict[str, Any]) -> dict[str, Any]:
    """A family point's stored inputs as PointInputs: the captured path's record as it is, a
    record of an older memprobe (the op-list path: its call overheads and per-step terms flat,
    `in_step_overhead_factor`) with its per-step terms as `machine` and nothing else guessed."""
    if "machine" in p or ("method" in p and "overhead_s" not in p):
        flat = {k: p[k] for k in ("fault_s_per_byte", "backward_call_s", "cross_core_s_per_byte", "update_call_s")
                if k in p and p[k] is not None}
        out = _pick(p, _fields(PointInputs))
        if "machine" not in out and flat:
            out["machine"] = flat
        return out
    machine = {"call_overhead_s": p.get("overhead_s") or {}, **{k: p[k] for k in ("backward_call_s", "fault_s_per_byte")
                                                                 if p.get(k) is not None}}
    return {"spec": p.get("spec") or {}, "method": "op list (an older memprobe)", "machine": machine,
            "in_step_call_scale": p.get("in_step_overhead_factor")}


def _family_inputs(v: dict[str, Any]) -> dict[str, Any]:
    return {"per_point": [_point_inputs(p) for p in v.get("per_point") or [] if isinstance(p, dict)],
            "op_rates": [_pick(r, _fields(ReplayedOp)) for r in v.get("op_rates") or [] if isinstance(r, dict)]}


def _split_training_inputs(training: Any) -> Any:
    """A stored study as TrainingStudy reads it: the families' inputs, which older scans kept
    under `inputs` beside the MLP's ("cpu/cnn" keys), moved to `family_inputs` in typed form."""
    if not isinstance(training, dict) or not isinstance(training.get("inputs"), dict):
        return training
    inputs = training["inputs"]
    fams = {k: v for k, v in inputs.items() if "/" in k and isinstance(v, dict)}
    if not fams:
        return training
    out = dict(training)
    out["inputs"] = {k: v for k, v in inputs.items() if "/" not in k}
    out["family_inputs"] = {**{k: {tk: _family_inputs(v) for tk, v in by_t.items() if isinstance(v, dict)}
                               for k, by_t in fams.items()}, **(training.get("family_inputs") or {})}
    return out


def _training_dict(t: dict[str, Any]) -> dict[str, Any]:
    """The train package's (and memprobe/1's) dict form of the study in TrainingStudy's shape."""
    pts = [_pick(p, _fields(TrainingPoint)) for p in t.get("points") or []]
    skipped = [_pick(p, _fields(SkippedPoint)) for p in t.get("skipped") or [] if isinstance(p, dict)]
    rows = []
    for s in t.get("speedup") or []:
        v = s.get("gpu_over_cpu", s.get("speedup"))
        if v is not None and s.get("cpu_s") and s.get("gpu_s"):
            rows.append({"width": s["width"], "batch": s["batch"], "cpu_s": s["cpu_s"], "gpu_s": s["gpu_s"],
                         "gpu_over_cpu": v})
    return {"points": pts, "skipped": skipped,
            "mnist": {k: _pick(v, _fields(EpochResult)) for k, v in (t.get("mnist") or {}).items()},
            "speedup": rows,
            "claims": [_pick(c, _fields(Claim)) for c in t.get("claims") or []],
            "seed_table": [_pick(r, _fields(SeedRow)) for r in t.get("seed_table") or []],
            "summary": {k: v for k, v in (t.get("summary") or {}).items() if isinstance(v, (int, float))},
            "settings": t.get("settings") or {}, "method": t.get("method") or "",
            "inputs": {dev: {"overhead_s": (t.get("overhead_s") or {}).get(dev),
                             "gemm_rates": (t.get("gemm_rates") or {}).get(dev)}
                       for dev in set(t.get("overhead_s") or {}) | set(t.get("gemm_rates") or {})},
            "family_inputs": t.get("family_inputs") or {},  # (the sweep writes FamilyInputs' shape)
            "gpu_wins_from_width": t.get("gpu_wins_from_width") or {}}
