import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from research.features import FeatureExtractor, FeatureSettings, describe
from tests.conftest import read_item_results, read_summary


def disc(size: int = 32, radius: float = 8.0) -> np.ndarray:
    """A bright disc on a dark background, in medlab's [-1, 1] range."""
    y, x = np.indices((size, size)) - (size - 1) / 2
    return np.where(np.hypot(x, y) <= radius, 0.8, -0.8)


def test_shape_descriptors_measure_a_known_disc() -> None:
    named = describe(disc(), FeatureSettings(descriptors=["shape", "first_order"]))
    assert named["shape/area"] == pytest.approx(np.pi * 8**2 / 32**2, rel=0.05)
    assert named["shape/eccentricity"] < 0.1 and named["shape/solidity"] > 0.95
    assert named["first_order/max"] == pytest.approx(0.9) and named["first_order/min"] == pytest.approx(0.1)


def test_constant_image_and_volume_give_finite_features_and_volumes_skip_planar_descriptors() -> None:
    flat = describe(np.zeros((28, 28)), FeatureSettings())
    assert all(np.isfinite(v) for v in flat.values())
    volume = describe(np.random.default_rng(0).uniform(-1, 1, (12, 12, 12)), FeatureSettings())
    assert {name.split("/")[0] for name in volume} == {"first_order", "edges", "shape"}
    with pytest.raises(ValueError, match="features.descriptors: \\['sift'\\] unknown"):
        FeatureSettings(descriptors=["sift"])


def test_features_are_cached_by_images_and_settings(tmp_path) -> None:
    images = np.random.default_rng(0).uniform(-1, 1, (3, 1, 28, 28)).astype(np.float32)
    extractor = FeatureExtractor(FeatureSettings(), tmp_path)
    features, names = extractor(images)
    assert features.shape == (3, len(names)) and len(list(tmp_path.iterdir())) == 1
    (cached,) = tmp_path.iterdir()
    np.savez(cached, features=features + 1, names=np.array(names))  # a cache hit reads the file back
    assert np.array_equal(extractor(images)[0], features + 1)
    FeatureExtractor(FeatureSettings(levels=16), tmp_path)(images)  # other settings: another entry
    FeatureExtractor(FeatureSettings(), tmp_path)(images[:2])  # other images: another entry
    assert len(list(tmp_path.iterdir())) == 3


def test_classical_run_chooses_on_validation_and_reports_like_a_network(run_medlab, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MEDLAB_CACHE", str(tmp_path / "cache"))
    run_dir = run_medlab(
        "classical/lesions_features",
        "--data.num_train=120", "--data.num_val=60", "--data.num_test=60", "--model.importance_repeats=3",
        "--model.classifiers={logistic_regression: {C: [0.01, 1.0]}, gradient_boosting: {max_iter: [50]}}",
        "--model.select_k=[null]",
    )  # fmt: skip
    summary = read_summary(run_dir)
    assert summary["best_checkpoint"] is None and summary["parameters"] == 0
    candidates = (run_dir / "candidates.csv").read_text().splitlines()
    assert len(candidates) == 4 and sum(line.endswith(",True") for line in candidates) == 1
    chosen_auc = max(float(line.split(",")[2]) for line in candidates[1:])  # val/auc column: the best was chosen
    assert summary["best_score"] == pytest.approx(chosen_auc, abs=1e-6)
    # The test AUC is torchmetrics' (ImageClassifier's metric); scikit-learn's on the written probabilities agrees.
    rows = read_item_results(run_dir)
    truth = [row["true"] == "lesion" for row in rows]
    assert summary["test"]["test/auc"] == pytest.approx(roc_auc_score(truth, [float(r["p_lesion"]) for r in rows]))
    assert sorted(p.name for p in (run_dir / "figures").iterdir()) == [
        "confusion_matrix.png", "feature_importance.png", "roc.png"
    ]  # fmt: skip
    assert (run_dir / "feature_importance.csv").read_text().startswith("group,columns,importance_mean")
