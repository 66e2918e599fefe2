"""Declared CPU facts read from a fixture sysfs tree (never this machine's)."""

from memprobe.platform.cpu import declared_data_caches, fma_flops_per_cycle, parse_cpu_list, parse_size, read_sysfs_caches, read_thp


def make_sysfs(root, caches):
    for i, (level, typ, size, line, ways, shared) in enumerate(caches):
        d = root / "devices" / "system" / "cpu" / "cpu0" / "cache" / f"index{i}"
        d.mkdir(parents=True)
        for name, val in (("level", level), ("type", typ), ("size", size), ("coherency_line_size", line),
                          ("ways_of_associativity", ways), ("shared_cpu_list", shared)):
            (d / name).write_text(f"{val}\n")
    thp = root / "kernel" / "mm" / "transparent_hugepage"
    thp.mkdir(parents=True)
    (thp / "enabled").write_text("always [madvise] never\n")


def test_reads_fixture_tree(tmp_path):
    make_sysfs(tmp_path, [(1, "Data", "48K", 64, 12, "0,16"), (1, "Instruction", "32K", 64, 8, "0,16"),
                          (2, "Unified", "2048K", 64, 16, "0,16"), (3, "Unified", "36864K", 64, 12, "0-31")])
    caches = read_sysfs_caches(tmp_path)
    assert [c["size_bytes"] for c in caches] == [48 << 10, 32 << 10, 2 << 20, 36 << 20]
    data = declared_data_caches(caches)
    assert [c["level"] for c in data] == [1, 2, 3]
    assert data[2]["shared_by_cpus"] == 32 and data[0]["shared_by_cpus"] == 2
    assert read_thp(tmp_path) == "madvise"


def test_missing_tree_is_empty(tmp_path):
    assert read_sysfs_caches(tmp_path) == []
    assert read_thp(tmp_path) is None


def test_parsers():
    assert parse_size("32768K") == 32 << 20 and parse_size("1M") == 1 << 20 and parse_size("x") is None
    assert parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]


def test_fma_width():
    assert fma_flops_per_cycle(["avx2", "fma"], 8) == 16
    assert fma_flops_per_cycle(["avx512f"], 4) == 64


def test_proc_cpuinfo_read_without_py_cpuinfo(tmp_path):
    """Linux's /proc/cpuinfo gives model, vendor, flags and the brand string's clock directly
    (py-cpuinfo's cpuid subprocess costs about a second); the first processor is read."""
    from memprobe.platform.cpu import fma_flops_per_cycle, read_proc_cpuinfo

    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13 @ 2.45GHz\n"
        "cpu MHz\t\t: 2450.000\nflags\t\t: fpu sse2 avx avx2 fma\n\n"
        "processor\t: 1\nvendor_id\t: Other\nmodel name\t: other\nflags\t\t: fpu\n")
    got = read_proc_cpuinfo(tmp_path)
    assert got["model"] == "AMD EPYC 7B13 @ 2.45GHz" and got["vendor"] == "AuthenticAMD"
    assert got["hz_advertised"] == 2.45e9
    assert got["flags"] == ["avx", "avx2", "fma", "fpu", "sse2"]
    assert fma_flops_per_cycle(got["flags"]) == 16


def test_proc_cpuinfo_without_flags_falls_back(tmp_path):
    """An Arm /proc/cpuinfo (Features, no flags) or none at all: py-cpuinfo reads the CPU."""
    from memprobe.platform.cpu import read_proc_cpuinfo

    assert read_proc_cpuinfo(tmp_path) is None
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert read_proc_cpuinfo(tmp_path) is None
