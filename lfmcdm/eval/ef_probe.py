"""Linear probe: how much ejection fraction a feature vector carries, measured honestly.

MAFE never sees EF; the probe asks whether EF is *linearly readable* from its motion vectors
(vs. from its appearance features). Every prediction is out-of-fold (k-fold cross-validation,
ridge strength chosen inside each training fold), so the R^2 never scores a video the probe was
fitted on.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MIN_SAMPLES_PER_FOLD = 2


def cross_validated_r2(features: np.ndarray, target: np.ndarray, folds: int, alphas: tuple[float, ...],
                       seed: int) -> float | None:
    """Out-of-fold R^2 of a standardised ridge regression; None when there are too few samples."""
    y = np.asarray(target, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    n_folds = min(folds, len(y) // MIN_SAMPLES_PER_FOLD)
    if n_folds < 2 or np.ptp(y) == 0:
        return None
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))
    cv = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(probe, x, y, cv=cv)
    return float(r2_score(y, predicted))
