"""Loaded latency and sharing probes at tiny sizes: they run, stream, and verify (no timings)."""

from memprobe.probes.cpu.loaded import LoadedLatencyProbe, SharingProbe, usable_cpus


def test_loaded_latency_points():
    p = LoadedLatencyProbe(1 << 20, 1 << 20)
    try:
        p.setup()
        base = p.run(0, "read", 2, target_ns=2e5)
        assert base["streaming_threads"] == 0 and base["stream_bytes"] == []
        assert len(base["samples_ns"]) == 2 and all(x > 0 for x in base["samples_ns"])
        if p.max_streaming_threads:
            for kernel in ("read", "triad"):
                r = p.run(1, kernel, 2, target_ns=2e5)
                assert r["streaming_threads"] == 1
                assert r["stream_bytes"][0] > 0 and r["stream_ns"][0] > 0
        p.verify()
    finally:
        p.close()


def test_sharing_probe():
    p = SharingProbe()
    try:
        p.setup(64 << 10)
        alone, loaded = p.run(2, target_ns=2e5)
        assert len(alone) == 2 and len(loaded) == 2
        p.verify()
        assert len(p.probes) == len(usable_cpus())
    finally:
        p.close()
