import numpy as np
import pytest
import torch
from medmnist.evaluator import getACC, getAUC

from datamodules import MedMNIST
from datamodules.spec import DataSpec
from research.models import LeNet
from research.tasks import ImageClassifier
from research.tasks.classification import build_metrics, choose_threshold


def _scores(task: str, n: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if task == "multilabel":
        return torch.rand(n, classes, generator=g), torch.randint(0, 2, (n, classes), generator=g)
    probs = torch.rand(n, classes, generator=g).softmax(1)
    return probs, torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize(
    ("task", "medmnist_task", "classes"),
    [("binary", "binary-class", 2), ("multiclass", "multi-class", 5), ("multilabel", "multi-label, binary-class", 4)],
)
def test_auc_and_acc_match_the_official_medmnist_evaluator(task: str, medmnist_task: str, classes: int) -> None:
    probs, targets = _scores(task, 300, classes)
    metrics = build_metrics(task, classes)
    metrics.update(probs[:, 1] if task == "binary" else probs, targets)
    values = metrics.compute()
    y_true = targets.numpy() if task == "multilabel" else targets.numpy()[:, None]
    assert values["auc"].item() == pytest.approx(getAUC(y_true, probs.numpy(), medmnist_task), abs=1e-6)
    assert values["acc"].item() == pytest.approx(getACC(y_true, probs.numpy(), medmnist_task), abs=1e-6)


def test_binary_sensitivity_and_specificity_treat_class_1_as_positive() -> None:
    metrics = build_metrics("binary", 2)
    metrics.update(torch.tensor([0.9, 0.8, 0.2, 0.1, 0.7]), torch.tensor([1, 1, 1, 0, 0]))
    values = metrics.compute()
    assert values["sensitivity"].item() == pytest.approx(2 / 3) and values["specificity"].item() == pytest.approx(0.5)


@pytest.mark.parametrize(("task", "classes"), [("binary", 2), ("multiclass", 3), ("multilabel", 4)])
def test_loss_follows_the_task_type(task: str, classes: int) -> None:
    model = ImageClassifier(LeNet, data=DataSpec(task, classes, 1, 2, [str(c) for c in range(classes)]).as_dict())
    images = torch.randn(6, 1, 32, 32)
    _, targets = _scores(task, 6, classes)
    loss, probs, _ = model._shared_step((images, targets))
    logits = model(images)
    expected = (
        torch.nn.functional.binary_cross_entropy_with_logits(logits, targets.float())
        if task == "multilabel"
        else torch.nn.functional.cross_entropy(logits, targets)
    )
    assert torch.allclose(loss, expected)
    assert probs.shape == ((6,) if task == "binary" else (6, classes))
    assert np.isfinite(loss.item())


def test_image_class_weights_are_inverse_training_frequencies_and_weight_the_loss(shared_data) -> None:
    data = MedMNIST(flag="breastmnist", root=str(shared_data))
    counts = np.bincount(data.read_split("train")[1], minlength=2)  # BreastMNIST: 147 malignant, 399 normal/benign
    weights = np.array(data.spec.class_weights)
    np.testing.assert_allclose(weights * counts, counts.sum() / 2)
    model = ImageClassifier(LeNet, class_weighting=True, data=data.spec.as_dict())
    images, targets = torch.randn(6, 1, 32, 32), torch.tensor([0, 1, 1, 1, 1, 1])
    logits = model(images)
    expected = torch.nn.functional.cross_entropy(logits, targets, weight=torch.tensor(weights, dtype=torch.float32))
    torch.testing.assert_close(model._shared_step((images, targets))[0], expected)
    with pytest.raises(ValueError, match="model.class_weighting: the DataModule provides no class weights"):
        ImageClassifier(LeNet, class_weighting=True, data=DataSpec("multilabel", 3, 1, 2, ["a", "b", "c"]).as_dict())


def test_flip_tta_averages_the_mirrored_logits_at_evaluation_only() -> None:
    torch.manual_seed(0)
    model = ImageClassifier(LeNet, tta_flip=True, data=DataSpec("binary", 2, 1, 2, ["a", "b"]).as_dict())
    images = torch.randn(3, 1, 32, 32)
    torch.testing.assert_close(model.train()(images), model.net(images))  # training sees each image once
    model.eval()
    expected = (model.net(images) + model.net(images.flip(-1))) / 2
    torch.testing.assert_close(model(images), expected)
    torch.testing.assert_close(model(images.flip(-1)), expected)  # the mirror image gets the same prediction


def test_channels_last_changes_the_layout_not_the_logits() -> None:
    def build(channels_last: bool) -> ImageClassifier:
        torch.manual_seed(0)
        data = DataSpec("multiclass", 10, 3, 2, [str(c) for c in range(10)]).as_dict()
        return ImageClassifier(lambda i, n: LeNet(i, n, input_size=32), data=data, channels_last=channels_last).eval()

    images = torch.randn(4, 3, 32, 32)
    nhwc = build(True)
    assert nhwc.net.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(nhwc(images), build(False)(images), rtol=1e-5, atol=1e-5)


def test_validation_thresholds_find_the_known_cut() -> None:
    # Scores at the quantiles of N(0.3, 0.08) for negatives and N(0.7, 0.08) for positives: sensitivity + specificity
    # peaks where the two densities cross, at 0.5; with ten negatives per positive, F1 pays for false positives and
    # moves the cut up.
    quantiles = torch.linspace(0.001, 0.999, 999, dtype=torch.float64)
    negatives = torch.distributions.Normal(0.3, 0.08).icdf(quantiles)
    positives = torch.distributions.Normal(0.7, 0.08).icdf(quantiles)
    scores, targets = torch.cat([negatives, positives]), torch.cat([torch.zeros(999), torch.ones(999)]).long()
    assert choose_threshold(scores, targets, "youden") == pytest.approx(0.5, abs=0.01)
    many = torch.cat([negatives.repeat(10), positives])
    many_targets = torch.cat([torch.zeros(9990), torch.ones(999)]).long()
    assert choose_threshold(many, many_targets, "youden") == pytest.approx(0.5, abs=0.01)  # prevalence-free
    assert choose_threshold(many, many_targets, "f1") > 0.52
    labels = choose_threshold(torch.stack([scores, 1 - scores], 1), torch.stack([targets, 1 - targets], 1), "youden")
    assert labels.shape == (2,) and labels[0] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ValueError, match="multi-class prediction is the argmax"):
        ImageClassifier(LeNet, data=DataSpec("multiclass", 3, 1, 2, ["a", "b", "c"]).as_dict(), decision_threshold="f1")
