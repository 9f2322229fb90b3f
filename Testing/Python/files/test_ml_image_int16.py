"""export-ml writes image.nii.gz as int16 exactly when every value is a whole number within int16
(the test it replaced: np.mod(volume, 1) == 0 and the range checked by min and max)."""
import numpy as np
import pytest


def _old(volume):
    return bool(np.all(np.mod(volume, 1) == 0) and volume.min(initial=0) >= -32768 and volume.max(initial=0) <= 32767)


def _new(volume):
    with np.errstate(invalid="ignore"):
        whole = volume.astype(np.int16)
    return np.array_equal(whole, volume), whole


@pytest.mark.parametrize("values", [[0, 1, -1024, 3071], [0.5, 1], [-32768, 32767], [-32769, 0], [32768, 0],
                                    [40000, -25536], [65536, 0], [np.nan, 0], [np.inf, 0], [-np.inf, 1], [-0.0, 2],
                                    [1e9, 0], [-1e-7, 0]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_int16_test_unchanged(values, dtype):
    volume = np.array(values, dtype).reshape(1, 1, -1)
    same, whole = _new(volume)
    assert same == _old(volume)
    if same:
        assert np.array_equal(whole, volume.astype(np.int16))
