"""core.model.present_labels against numpy.unique for every integer type (the bincount path now
also takes signed and wider integers whose values fit 16 bits, as .nrrd label maps hold)."""
import numpy as np
import pytest

from DicomAnnotEmbedLib.core.model import present_labels


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int8, np.int16, np.int32, np.int64])
def test_present_labels_match_unique(dtype):
    rng = np.random.default_rng(7)
    for high in (1, 5, 100, 127):
        labels = rng.integers(0, high + 1, (int(rng.integers(1, 6)), 9, 11)).astype(dtype)
        expected = np.unique(labels)
        assert present_labels(labels).tolist() == expected[expected != 0].tolist()


@pytest.mark.parametrize("labels", [np.array([[-1, 3], [0, 5]], np.int16), np.array([[70000, 3], [0, 5]], np.int32),
                                    np.zeros((0, 3, 3), np.int16), np.array([4, 0, 2], np.int16)])
def test_present_labels_outside_the_fast_path(labels):
    expected = np.unique(labels)
    assert present_labels(labels).tolist() == expected[expected != 0].tolist()
