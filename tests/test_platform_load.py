from memprobe.platform.load import max_steal_fraction, read_cpu_times

STAT = """cpu  300 0 30 700 0 0 0 20 0 0
cpu0 100 0 10 390 0 0 0 0 0 0
cpu1 200 0 20 310 0 0 0 20 5 0
intr 12345
"""


def _write(tmp_path, text):
    (tmp_path / "stat").write_text(text)
    return tmp_path


def test_read_cpu_times_per_cpu(tmp_path):
    got = read_cpu_times(_write(tmp_path, STAT))
    # guest (5) is already inside user: not counted twice
    assert got == {"cpu0": (0, 500), "cpu1": (20, 550)}


def test_read_cpu_times_missing_or_odd(tmp_path):
    assert read_cpu_times(tmp_path) == {}
    assert read_cpu_times(_write(tmp_path, "cpu0 1 2 3\ncpuX a b c d e f g h\ncpuX 1 2 3 4 5 6 7 8\n")) == {}


def test_max_steal_fraction_takes_the_worst_cpu():
    before = {"cpu0": (0, 1000), "cpu1": (10, 1000)}
    after = {"cpu0": (5, 1100), "cpu1": (40, 1100)}
    assert max_steal_fraction(before, after) == 0.3
    assert max_steal_fraction(before, after, cpus={0}) == 0.05  # only the CPUs we may run on
    assert max_steal_fraction(before, after, cpus={7}) == 0.3  # none of ours listed: all of them


def test_max_steal_fraction_needs_enough_ticks():
    # one stolen tick in a 20-tick stage is noise, not 5 %
    assert max_steal_fraction({"cpu0": (0, 1000)}, {"cpu0": (1, 1020)}) is None
    assert max_steal_fraction({"cpu0": (0, 1000)}, {"cpu0": (1, 1020)}, cpus={0}) is None


def test_max_steal_fraction_nothing_counted():
    same = {"cpu0": (3, 1000)}
    assert max_steal_fraction(same, same) is None
    assert max_steal_fraction({}, {}) is None
    assert max_steal_fraction({"cpu1": (0, 1)}, same) is None


def test_wait_quiet_gives_up_beside_a_busy_neighbour():
    import subprocess
    import sys
    import time

    from memprobe.platform.load import OthersMeter, wait_quiet

    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<20: pass"])
    try:
        time.sleep(0.3)
        m = OthersMeter().start()
        time.sleep(0.6)
        assert m.share() > 0.5  # the burner's whole CPU, not ours
        quiet, waited = wait_quiet(1.5, window_s=0.5)
    finally:
        burner.kill()
        burner.wait()
    assert not quiet and waited >= 1.5
