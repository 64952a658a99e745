"""The shipped digit classifier, class-conditional accuracy and the Frechet distance in its features."""
import json

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn.datasets")

from dit3d.metrics import images as im  # noqa: E402
from dit3d.metrics.images import (  # noqa: E402
    DEFAULT_CLASSIFIER,
    DigitClassifier,
    class_conditional_accuracy,
    classifier_features,
    evaluate_images,
    feature_statistics,
    frechet_classifier_distance,
    frechet_distance,
    load_digit_classifier,
    real_digits,
    save_digit_classifier,
    train_digit_classifier,
)
from dit3d.pretrained import PretrainedError  # noqa: E402


@pytest.fixture(scope="module")
def clf():
    return load_digit_classifier()


@pytest.fixture(scope="module")
def test_split():
    return real_digits("test")


def test_shipped_classifier_is_small_and_records_how_it_was_made(clf):
    files = {p.name: p.stat().st_size for p in DEFAULT_CLASSIFIER.iterdir()}
    assert {"config.json", "model.safetensors"} <= set(files) and sum(files.values()) < 1_000_000
    config = json.loads((DEFAULT_CLASSIFIER / "config.json").read_text())
    assert config["kind"] == "digits-classifier" and config["seed"] == 0
    assert config["data"]["trained_on"] == "train" and (config["data"]["num_train"], config["data"]["num_test"]) == (
        1438, 359)
    assert "dit3d.metrics.images train-classifier -o data/digits_classifier" in config["command"]
    assert {"torch", "numpy", "scikit-learn", "dit3d"} <= set(config["versions"])
    assert clf.info["test_accuracy"] == config["test_accuracy"] and clf.path == DEFAULT_CLASSIFIER
    assert clf.image_shape == (1, 16, 16) and not clf.training


def test_accuracy_on_real_test_digits_is_the_recorded_one(clf, test_split):
    x, y = test_split
    acc = class_conditional_accuracy(x, y, clf)
    assert acc > 0.95 and acc == pytest.approx(clf.info["test_accuracy"], abs=1e-4)
    assert class_conditional_accuracy(x, (y + 1) % 10, clf) < 0.05  # wrong intended classes score low
    assert class_conditional_accuracy(x.numpy(), y.tolist()) == acc  # numpy in, shipped classifier by default


def test_frechet_distance_self_zero_real_small_noise_large(clf, test_split):
    x, _ = test_split
    assert frechet_classifier_distance(x, x, clf) == pytest.approx(0.0, abs=1e-6)
    train = real_digits("train")[0]
    real = frechet_classifier_distance(train, None, clf)  # default reference: the test split
    noise = frechet_classifier_distance(torch.rand(359, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                                        x, clf)
    blank = frechet_classifier_distance(-torch.ones(50, 1, 16, 16) + 0.01 * torch.randn(50, 1, 16, 16), x, clf)
    assert 0 < real < 10 and noise > 20 * real and blank > 20 * real


def test_frechet_distance_closed_forms():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 4.0, 1.0])
    # commuting (diagonal) covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(1 + 4 + (1 + 0 + 4))
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    a = np.random.default_rng(0).normal(size=(4, 4))
    s = a @ a.T + np.eye(4)
    assert frechet_distance(np.zeros(4), s, np.zeros(4), s) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(np.zeros(4), s, np.ones(4), s) == pytest.approx(4.0)


def test_sqrtm_safeguards(monkeypatch):
    # singular covariances (dead features, fewer samples than features) stay finite and >= 0
    f = np.random.default_rng(0).normal(size=(5, 8))
    f[:, 3] = 0.0
    mu, s = feature_statistics(f)
    assert np.linalg.matrix_rank(s) < 8
    d = frechet_distance(mu, s, mu + 0.1, s)
    assert np.isfinite(d) and d >= 0
    eye = np.eye(3)
    calls = []

    def nan_then_identity(m):
        calls.append(m.copy())
        return np.full_like(m, np.nan) if len(calls) == 1 else eye

    monkeypatch.setattr(im, "sqrtm", nan_then_identity)
    assert frechet_distance(np.zeros(3), eye, np.zeros(3), eye) == pytest.approx(0.0)
    assert len(calls) == 2 and np.allclose(calls[1], (1 + 1e-6) ** 2 * eye)  # eps added to both diagonals
    monkeypatch.setattr(im, "sqrtm", lambda m: eye + 1e-6j)  # rounding noise: dropped
    assert frechet_distance(np.zeros(3), eye, np.zeros(3), eye) == pytest.approx(0.0, abs=1e-9)
    monkeypatch.setattr(im, "sqrtm", lambda m: eye + 0.5j)
    with pytest.raises(ValueError, match="imaginary component"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), eye)
    monkeypatch.setattr(im, "sqrtm", lambda m: np.full_like(m, np.inf))
    with pytest.raises(ValueError, match="not finite even with eps"):
        frechet_distance(np.zeros(3), eye, np.zeros(3), eye)
    monkeypatch.setattr(im, "sqrtm", lambda m: 2 * eye)  # rounding below zero is clamped
    assert frechet_distance(np.zeros(3), eye, np.zeros(3), eye) == 0.0


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(4, 1, 8, 8), r"must be \(n >= 1, 1, 16, 16\)"),
    (torch.full((4, 1, 16, 16), float("nan")), "NaN or inf"),
    (torch.zeros(0, 1, 16, 16), "must be"),
])
def test_bad_images_fail_clearly(clf, bad, match):
    with pytest.raises(ValueError, match=match):
        classifier_features(bad, clf)


def test_bad_labels_and_statistics_fail_clearly(clf, test_split):
    x, y = test_split
    with pytest.raises(ValueError, match=r"labels must be \(359,\) integers"):
        class_conditional_accuracy(x, y[:10], clf)
    with pytest.raises(ValueError, match=r"lie in \[0, 10\)"):
        class_conditional_accuracy(x, y + 5, clf)
    with pytest.raises(ValueError, match="n >= 2"):
        feature_statistics(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="alike"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(PretrainedError, match="no such pretrained folder"):
        load_digit_classifier("/nonexistent/classifier")


def test_evaluate_images_reports_metrics_floor_and_protocol(clf, test_split):
    x, y = test_split
    keep = np.concatenate([np.flatnonzero(y.numpy() == c)[:8] for c in range(10)])
    result = evaluate_images(x[keep], y[keep], clf, seed=1)
    assert result["class_accuracy"] >= 0.9 and set(result["per_class_accuracy"]) == {str(c) for c in range(10)}
    assert result["frechet_classifier_distance"] > 0 and result["real_baseline"]["frechet_classifier_distance"] > 0
    p = result["protocol"]
    assert "not FID" in p["frechet_classifier_distance"] and "Heusel" in p["frechet_classifier_distance"]
    assert p["classifier"]["test_accuracy"] == clf.info["test_accuracy"] and p["num_samples"] == 80
    assert p["class_counts"] == {str(c): 8 for c in range(10)} and p["seed"] == 1 and p["num_reference"] == 359
    json.dumps(result)
    again = evaluate_images(x[keep], y[keep], clf, seed=1)
    assert again["real_baseline"] == result["real_baseline"]  # seeded


def test_training_is_seeded_and_round_trips(tmp_path):
    state = torch.random.get_rng_state()
    a, info = train_digit_classifier(seed=3, epochs=1)
    b, _ = train_digit_classifier(seed=3, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), state)  # global random state untouched
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert 0 < info["test_accuracy"] <= 1 and info["seed"] == 3 and info["data"]["split_seed"] == 0
    path = save_digit_classifier(a, tmp_path / "clf", info, command="test")
    loaded = load_digit_classifier(path)
    x = real_digits("test")[0][:16]
    assert torch.equal(loaded(x), a(x)) and loaded.info["command"] == "test"
    assert loaded.info["test_accuracy"] == info["test_accuracy"]
    with pytest.raises(ValueError, match="multiple of 4"):
        DigitClassifier(image_size=10)


def test_reference_digits_follow_the_split_the_classifier_records():
    net = load_digit_classifier(DEFAULT_CLASSIFIER)
    shipped_test = im.classifier_split(net, "test")[0]
    assert torch.equal(shipped_test, real_digits("test", 16)[0])  # the shipped one used the defaults
    net.info = {**net.info, "data": {**net.info["data"], "split_seed": 1}}
    other = im.classifier_split(net, "test")[0]
    assert torch.equal(other, real_digits("test", 16, "bilinear", 0.2, 1)[0])
    assert not torch.equal(other, shipped_test)
    # evaluate_images judges against that split too: its reference statistics change with it
    x = real_digits("train", 16)[0][:20]
    a = frechet_classifier_distance(x, classifier=load_digit_classifier(DEFAULT_CLASSIFIER))
    b = frechet_classifier_distance(x, classifier=net)
    assert a != b
