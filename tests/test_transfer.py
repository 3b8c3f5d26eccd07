"""Layer names and features, checkpoint loading across architectures, the linear SVM, and
fine-tuning (new head, frozen layers, the finetune command)."""
import numpy as np
import pytest

from pyconvnet import cli, models, nn, optim, transfer as T
from pyconvnet.data import load_digits

LENET = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "flatten2", "fc3", "relu3", "fc4",
         "relu4", "fc5"]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits("test", size=28, pad=4)  # 359 images
    return (x[:120], y[:120]), (x[120:200], y[120:200])


# ---- names and features
def test_layer_names_follow_caffe():
    assert T.layer_names(models.lenet5()) == LENET
    alex = T.layer_names(models.alexnet_small(10))
    assert alex[:4] == ["conv1", "relu1", "norm1", "pool1"]
    assert [alex[i] for i in (14, 16, 18, 19, 22)] == ["pool5", "fc6", "drop6", "fc7", "fc8"]
    twice = nn.Sequential(nn.Conv2d(1, 1, 3), nn.ReLU(), nn.ReLU())
    assert T.layer_names(twice) == ["conv1", "relu1", "relu1_2"]


def test_layer_index_accepts_names_and_indices():
    m = models.lenet5()
    assert [T.layer_index(m, v) for v in ("fc3", 7, "7", -1)] == [7, 7, 7, 11]
    with pytest.raises(ValueError, match=r"unknown layer 'fc6'; valid names: conv1, relu1, .*fc5"):
        T.layer_index(m, "fc6")
    with pytest.raises(ValueError, match="layer index 12 does not exist"):
        T.layer_index(m, 12)


def test_features_batch_in_eval_mode(rng):
    nn.init.seed(3)
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.5), nn.Flatten(), nn.Linear(2 * 6 * 6, 4))
    x = rng.random((10, 1, 8, 8)).astype(np.float32)
    f = T.features(m, x, "fc2", batch_size=3)
    assert f.shape == (10, 4) and m.training  # mode restored
    m.eval()
    np.testing.assert_allclose(f, m(x), rtol=1e-6)
    np.testing.assert_allclose(T.features(m, x, "drop1"), m.features(x, 1), rtol=1e-6)


# ---- checkpoints
def test_load_model_round_trip(lenet_checkpoint):
    path, state = lenet_checkpoint
    model, config, stats = T.load_model(path)
    assert config["model"] == "lenet5" and stats == {}
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, state[k])


def test_weights_of_another_architecture_are_refused(lenet_checkpoint):
    path, _ = lenet_checkpoint
    with pytest.raises(ValueError, match=r"\(lenet5\) does not fit this model: parameter 0.weight has "
                                         r"shape \(6, 1, 5, 5\) in the checkpoint, \(64, 3, 5, 5\)"):
        T.load_weights(models.alexnet_small(10, 32), path)
    with pytest.raises(ValueError, match="parameter 11.weight"):
        T.load_weights(models.lenet5(5), path)
    T.load_weights(models.lenet5(5), path, skip={"11.weight", "11.bias"})


# ---- SVM
def test_svm_on_features_reports_accuracy(lenet_checkpoint, digits):
    model, _, _ = T.load_model(lenet_checkpoint[0])
    r = T.svm(model, "pool2", *digits)
    assert r["layer"] == "pool2" and r["index"] == 5 and r["dim"] == 400
    assert (r["n_train"], r["n_test"]) == (120, 80) and r["converged"]
    assert r["train_acc"] > 0.9 and r["test_acc"] > 0.5  # random conv features still separate digits
    raw = T.linear_svm(digits[0][0], digits[0][1], *digits[1])
    assert raw["dim"] == 784 and 0 <= raw["test_acc"] <= 1


def test_per_class_subsets():
    y = np.array([0, 1, 1, 2, 2, 2, 0, 1])
    idx = T.per_class(y, 2, seed=0)
    assert np.bincount(y[idx]).tolist() == [2, 2, 2] and (np.diff(idx) > 0).all()


# ---- fine-tuning
def test_replace_head_keeps_the_body(lenet_checkpoint):
    path, state = lenet_checkpoint
    model, _, _ = T.load_model(path)
    new = T.replace_head(model, 3)
    assert new[11].out_features == 3 and new.flat_params.size == model.flat_params.size - 7 * 85
    for k, v in new.state_dict().items():
        if not k.startswith("11."):
            np.testing.assert_array_equal(v, state[k])
    assert new(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 3)
    assert new[11].lr_mult == 10.0 and T.freeze(new, ["conv1"]) == ["conv1"]
    assert (new[0].lr_mult, new[3].lr_mult, new[11].lr_mult) == (0.0, 1.0, 10.0)  # head keeps its 10


def test_frozen_layers_do_not_move(rng):
    nn.init.seed(0)
    m = models.lenet5(4)
    assert T.freeze(m, upto="pool2") == ["conv1", "conv2"]
    assert T.freeze(m, ["conv1", "fc4"]) == ["conv1", "fc4"]
    before = m.state_dict()
    opt = optim.SGD(m, 0.1)
    x, y = rng.random((8, 1, 28, 28)).astype(np.float32), np.arange(8) % 4
    crit = nn.SoftmaxCrossEntropy()
    for _ in range(2):
        crit(m(x), y)
        m.zero_grad()
        m.backward(crit.backward())
        opt.step()
    after = m.state_dict()
    for k in before:
        moved = not np.array_equal(before[k], after[k])
        assert moved == (k.split(".")[0] not in ("0", "9")), k


def test_freeze_errors():
    m = models.lenet5()
    with pytest.raises(ValueError, match=r"layers \['relu1'\] have no parameters; weighted layers: conv1"):
        T.freeze(m, ["relu1"])
    with pytest.raises(ValueError, match="nothing would train"):
        T.freeze(m, upto="fc5")
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        T.freeze(m, ["conv9"])


def test_finetune_and_scratch(lenet_checkpoint, tmp_path):
    path, _ = lenet_checkpoint
    r = T.finetune(path, "digits", 10, ["conv1"], epochs=1, lr=0.01, k_per_class=3,
                   out=str(tmp_path))
    assert r["frozen"] == ["conv1"] and r["n_train"] == 30 and 0 <= r["top1"] <= 1
    model, config, _ = T.load_model(str(tmp_path / "checkpoint.npz"))
    np.testing.assert_array_equal(model.flat_params, r["model"].flat_params)
    assert config["finetuned_from"] == path
    s = T.scratch(path, "digits", 10, epochs=1, k_per_class=3)
    assert s["n_train"] == 30 and 0 <= s["top1"] <= 1
    with pytest.raises(ValueError, match="--num-classes 5, but digits has 10 classes"):
        T.finetune(path, "digits", 5, epochs=1, k_per_class=3)


def test_finetune_command(lenet_checkpoint, capsys):
    path, _ = lenet_checkpoint
    assert cli.main(["finetune", path, "--data", "digits", "--num-classes", "10", "--per-class", "2",
                     "--epochs", "1", "--freeze-upto", "conv2"]) == 0
    assert "frozen conv1, conv2" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown layer 'fc9'"):
        cli.main(["finetune", path, "--data", "digits", "--num-classes", "10", "--freeze", "fc9"])


def test_transfer_command_prints_the_table(lenet_checkpoint, capsys):
    path, _ = lenet_checkpoint
    assert cli.main(["transfer", path, "--layers", "pool2,fc3", "--per-class", "3"]) == 0
    out = capsys.readouterr().out
    assert "(30 train / 359 test)" in out and all(n in out for n in ("raw pixels", "pool2", "fc3"))


def test_demo_finetune_runs():
    from pyconvnet.lecture_cli import demo_finetune
    r = demo_finetune(k_per_class=2, epochs=1, source_epochs=1, seeds=(0,))
    assert r["n_train"] == 10 and r["n_test"] == 500
    assert set(r["mean"]) == {"finetune_all", "finetune_frozen", "scratch"}
