from memprobe.infer.line import line_from_false_sharing, line_from_stride


def test_false_sharing_drop_marks_the_line():
    assert line_from_false_sharing([8, 16, 32, 64, 128, 256], [30, 31, 29, 3, 3, 3]) == 64
    assert line_from_false_sharing([8, 16, 32, 64, 128, 256], [30, 31, 29, 30, 3, 3]) == 128
    assert line_from_false_sharing([8, 16, 32, 64], [3, 3, 3, 3]) is None  # no contention seen


def test_stride_climb():
    assert line_from_stride([8, 16, 32, 64, 128], [50, 50, 50, 100, 100]) == 64
    assert line_from_stride([8, 16, 32, 64, 128], [90, 91, 92, 93, 95]) is None  # prefetchers hid it
