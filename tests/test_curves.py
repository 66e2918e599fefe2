"""Curve file parsers: CSV (ns or cycles) and lmbench lat_mem_rd; bad input is an InputError."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from memprobe.errors import InputError
from memprobe.infer.curves import MB, parse_curve, read_curve_file

pos = st.floats(min_value=1e-3, max_value=1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(pos, pos), min_size=4, max_size=60, unique_by=lambda t: t[0]),
       st.sampled_from(["latency_ns", "latency_cycles"]))
def test_csv_round_trip(rows, col):
    text = f"size_bytes,{col}\n" + "".join(f"{s!r},{v!r}\n" for s, v in rows)
    c = parse_curve(text.encode())
    assert c.unit == col.split("_")[1] and c.source_format == "csv"
    assert c.size_bytes == [s for s, _ in rows] and c.latency == [v for _, v in rows]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(pos, pos), min_size=4, max_size=60, unique_by=lambda t: t[0]))
def test_lmbench_round_trip(rows):
    text = '"stride=64\n' + "".join(f"{s!r} {v!r}\n" for s, v in rows) + '\n"stride=128\n0.1 9\n'
    c = parse_curve(text.encode())
    assert c.unit == "ns" and c.source_format == "lmbench"
    assert c.size_bytes == pytest.approx([s * MB for s, _ in rows])
    assert c.latency == [v for _, v in rows]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_is_an_input_error_or_a_curve(raw):
    try:
        c = parse_curve(raw)
    except InputError as exc:
        assert "\n" not in str(exc)
    else:
        assert len(set(c.size_bytes)) >= 4


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
@example(text=",\r0")  # found by hypothesis: csv.Error escaped as a traceback
def test_garbage_text_is_an_input_error_or_a_curve(text):
    try:
        parse_curve(text)
    except InputError:
        pass


@pytest.mark.parametrize("text,needle", [
    ("", "empty"), ("   \n\n", "empty"),
    ("size_bytes,foo\n1,2\n", "latency_ns"),
    ("bytes,latency_ns\n1,2\n", "size_bytes"),
    ("size_bytes,latency_ns\n1,2\n2,-3\n", "positive"),
    ("size_bytes,latency_ns\n1,2\n2\n", "columns"),
    ("size_bytes,latency_ns\n1,2\n2,3\n", "at least 4"),
    ("0.1 2 3\n", "lmbench"),
])
def test_malformed(text, needle):
    with pytest.raises(InputError, match=needle):
        parse_curve(text.encode(), name="f")


def test_binary_and_missing(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"\x7fELF\x00\x01\x02")
    with pytest.raises(InputError, match="binary"):
        read_curve_file(p)
    with pytest.raises(InputError, match="no such file"):
        read_curve_file(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="folder"):
        read_curve_file(tmp_path)
