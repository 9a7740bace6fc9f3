"""scikit-learn pipelines for classical baselines, described as plain data (so a run's config and checkpoint hold
no pickled objects) and built on demand."""

from itertools import product
from typing import Any, Literal

from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

Classifier = Literal["logistic_regression", "svm", "random_forest", "gradient_boosting"]


def estimator(name: Classifier, options: dict[str, Any], seed: int) -> ClassifierMixin:
    """The scikit-learn classifier of ``name`` with ``options`` and the run's seed.

    The SVM's probabilities come from Platt scaling fitted by internal cross-validation (``CalibratedClassifierCV``,
    what scikit-learn 1.9 recommends over ``SVC(probability=True)``).
    """
    if name == "logistic_regression":
        return LogisticRegression(max_iter=5000, random_state=seed, **options)
    if name == "svm":
        return CalibratedClassifierCV(SVC(random_state=seed, **options), ensemble=False)
    if name == "random_forest":
        return RandomForestClassifier(random_state=seed, n_jobs=-1, **options)
    if name == "gradient_boosting":
        return HistGradientBoostingClassifier(random_state=seed, **options)
    raise ValueError(f"classifier {name!r} unknown; expected one of {', '.join(Classifier.__args__)}")


def candidates(grid: dict[str, dict[str, list[Any]]], select_k: list[int | None]) -> list[dict[str, Any]]:
    """Every pipeline of a grid, as plain data: ``{"classifier", "options", "select_k"}`` per candidate, in order."""
    unknown = sorted(set(grid) - set(Classifier.__args__))
    if unknown:
        raise ValueError(f"model.classifiers: {unknown} unknown; expected some of {', '.join(Classifier.__args__)}")
    return [
        {"classifier": name, "options": options, "select_k": k}
        for name, values in grid.items()
        for options, k in product(ParameterGrid({key: list(v) for key, v in (values or {}).items()}), select_k)
    ]


def describe_candidate(candidate: dict[str, Any]) -> str:
    options = ", ".join(f"{key}={value}" for key, value in candidate["options"].items())
    selected = f", best {candidate['select_k']} features" if candidate["select_k"] else ""
    return f"{candidate['classifier']}({options}){selected}"


def build_pipeline(candidate: dict[str, Any], seed: int, num_features: int) -> Pipeline:
    """Missing values imputed by the training median (with missing-indicator columns), standardised, optionally the
    ``select_k`` features of highest ANOVA F on the training split, then the classifier.
    Gradient boosting takes NaN and raw scales natively, so it gets no imputer or scaler unless features are
    selected."""
    name, k = candidate["classifier"], candidate["select_k"]
    steps: list[tuple[str, Any]] = []
    if name != "gradient_boosting" or k:
        steps.append(("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)))
    if name != "gradient_boosting":
        steps.append(("scale", StandardScaler()))
    if k:
        steps.append(("select", SelectKBest(f_classif, k=k if k < num_features else "all")))
    steps.append(("classify", estimator(name, dict(candidate["options"]), seed)))
    return Pipeline(steps)
