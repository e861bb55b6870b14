"""Linear probing: how well a linear classifier reads labels off frozen features (MAE's evaluation of learnt
representations, He et al. 2022, Sec. 4), here a scikit-learn logistic regression scored on held-out data."""

from __future__ import annotations

__all__ = ["linear_probe"]


def linear_probe(train_x, train_y, test_x, test_y, C: float = 1.0) -> float:
    """Test accuracy of a logistic regression on frozen features (standardized with train statistics)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(C=C, max_iter=2000).fit(scaler.transform(train_x), train_y)
    return float(clf.score(scaler.transform(test_x), test_y))
