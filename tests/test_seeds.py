"""Results over seeds: mean, spread and the paired comparison against SciPy's t-interval."""
import numpy as np
import pytest
from scipy import stats

from gaze_jax.metrics import seeds


def test_mean_std_and_aggregate():
  assert seeds.mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, np.std([1, 2, 4], ddof=1)))
  mean, std = seeds.mean_std([3.0, float('nan')])  # NaN (an undefined ASR) is left out.
  assert mean == 3.0 and np.isnan(std)
  out = seeds.aggregate([{'a': 1.0, 'b': 2.0, 'kind': 'wanet'}, {'a': 3.0, 'b': 2.0}])
  assert out == {'a': [2.0, pytest.approx(np.sqrt(2))], 'b': [2.0, 0.0]}


def test_paired_interval_equals_scipy():
  treated, control = [5.0, 7.5, 6.0, 9.0], [4.0, 4.5, 4.5, 5.0]
  out = seeds.paired(treated, control)
  diffs = np.subtract(treated, control)
  low, high = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
  assert out['mean'] == pytest.approx(diffs.mean()) and out['n'] == 4
  assert out['ci95'] == pytest.approx([low, high])
  assert stats.ttest_rel(treated, control).pvalue < 0.05 and low > 0  # Both say: it differs.
  single = seeds.paired([1.0], [0.5])
  assert single['mean'] == 0.5 and np.isnan(single['ci95'][0])
