"""The published-curve scorer (benchmarks/infer_accuracy.py): its pairing and its units decide
the score docs/validation.md quotes, so they are tested like code."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import infer_accuracy as ia  # noqa: E402

K, M = 1 << 10, 1 << 20


def test_declared_megabytes_are_binary():
    sizes = dict(ia.declared_sizes({"declared_caches": {
        "L2": "50 MB total", "L1": "256 KiB per SM", "DRAM": "80 GB HBM3", "SLC": "16 MB"}}))
    assert sizes == {"L2": 50 * M, "L1": 256 * K, "SLC": 16 * M}  # DRAM is skipped


def test_pairing_keeps_order_and_leaves_a_tlb_step_unpaired():
    # N100-like: a TLB step read as a level at 168 KiB, the next "cache" at 7 MiB
    declared = [32 * K, 2 * M, 6 * M]
    inferred = [42 * K, 168 * K, 7 * M]
    assert ia.pair_in_order(declared, inferred) == {0: 0, 2: 2}


def test_pairing_one_to_one_in_order():
    declared = [64 * K, 1 * M, 16 * M]
    inferred = [89 * K, 1 * M, 19 * M]
    assert ia.pair_in_order(declared, inferred) == {0: 0, 1: 1, 2: 2}
    # an extra inferred level in the middle (a split L2's near half) is skipped, not paired
    assert ia.pair_in_order([256 * K, 50 * M], [243 * K, 27 * M, 51 * M]) == {0: 0, 1: 2}


def test_pairing_refuses_far_pairs():
    assert ia.pair_in_order([32 * K], [1 * M]) == {}
    assert ia.pair_in_order([], [1 * M]) == {}
    assert ia.pair_in_order([1 * M], []) == {}


def test_main_leaves_out_a_cache_beyond_the_curve(tmp_path, capsys):
    import json

    from hierarchy_sim import SimLevel, geometric_sizes, latency_curve

    sizes = geometric_sizes(4 * K, 16 * M, 4)
    lat = latency_curve([SimLevel(32 * K, 1.0), SimLevel(1 * M, 4.0)], 30.0, sizes)
    (tmp_path / "m.csv").write_text("size_bytes,latency_ns\n" +
                                    "".join(f"{s},{v}\n" for s, v in zip(sizes, lat)))
    (tmp_path / "sources.json").write_text(json.dumps({"curves": {"m": {"declared_caches": {
        "L1d": "32 KiB", "L2": "1 MiB", "SLC": "24 MB"}}}}))
    assert ia.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "beyond the curve (ends at 16M)" in out
    assert "2/2 declared caches inside the reported interval" in out


def test_found_is_within_25_percent_or_inside_a_one_octave_interval():
    assert ia.found(5 * M, None, 6 * M)  # 0.83
    assert not ia.found(4 * M, (4 * M, 16 * M), 6 * M)  # 0.67, interval two octaves wide
    assert ia.found(4 * M, (4 * M, 8 * M), 6 * M)  # inside a one-octave interval
    assert not ia.found(4 * M, (2 * M, 5 * M), 6 * M)


def test_pair_found_keeps_order_and_uses_a_level_once():
    from types import SimpleNamespace as L

    caches = [L(size_bytes=32 * K, size_range_bytes=(32 * K, 64 * K)),
              L(size_bytes=128 * K, size_range_bytes=(128 * K, 256 * K)),  # a TLB step
              L(size_bytes=1700 * K, size_range_bytes=(1400 * K, 2 * M))]
    assert ia.pair_found([32 * K, 2 * M, 6 * M], caches) == {0: 0, 1: 2}
