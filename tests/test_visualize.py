"""Receptive fields on hand-made nets with known answers, top-9 patches against brute force and
against re-running the net on the cropped patch, and the visualize command end to end."""
import numpy as np
import pytest

from pyconvnet import cli, models, nn
from pyconvnet import visualize as V


def _rf(*layers):
    return V.receptive_field(nn.Sequential(*layers), len(layers) - 1)


# ---- receptive fields
def test_two_3x3_convs_see_5x5():
    rf = _rf(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3))
    assert (rf.size, rf.jump, rf.start) == ((5, 5), (1, 1), (0, 0))


def test_conv_pool_conv_sees_8x8_with_jump_2():
    rf = _rf(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3))
    assert (rf.size, rf.jump, rf.start) == ((8, 8), (2, 2), (0, 0))
    assert rf.box(1, 2) == (2, 4, 10, 12)


def test_padding_shifts_the_start_and_boxes_clip():
    rf = _rf(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1))
    assert (rf.size, rf.start) == ((5, 5), (-2, -2))
    assert rf.box(0, 0) == (-2, -2, 3, 3) and rf.box(0, 0, (8, 8)) == (0, 0, 3, 3)
    assert rf.box(7, 7, (8, 8)) == (5, 5, 8, 8)
    rf = _rf(nn.Conv2d(1, 1, (3, 5), stride=(1, 2), padding=(0, 2)))  # axes are independent
    assert (rf.size, rf.jump, rf.start) == ((3, 5), (1, 2), (0, -2))


def test_known_nets():
    lenet = models.lenet5()
    assert V.receptive_field(lenet, 5).size == (16, 16) and V.receptive_field(lenet, 5).jump == (4, 4)
    alex = [nn.Conv2d(1, 1, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(5), nn.MaxPool2d(3, 2),
            nn.Conv2d(1, 1, 5, padding=2), nn.MaxPool2d(3, 2), nn.Conv2d(1, 1, 3, padding=1),
            nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1), nn.MaxPool2d(3, 2)]
    rf = V.receptive_field(alex, 9)  # AlexNet's pool5 geometry: the well-known 195 pixels, stride 32
    assert (rf.size, rf.jump) == ((195, 195), (32, 32))
    with pytest.raises(ValueError, match="no spatial geometry"):
        V.receptive_field(lenet, 7)
    with pytest.raises(ValueError, match="conv layer 3 does not exist: the model has 2"):
        V.conv_index(lenet, 3)


# ---- top activations and patches
@pytest.fixture
def net_and_images(rng):
    nn.init.seed(1)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 3, 3))
    return net, rng.random((12, 1, 14, 14)).astype(np.float32)


@pytest.mark.parametrize("mode", ["image", "position"])
def test_top_activations_match_brute_force(net_and_images, mode):
    net, x = net_and_images
    a = net.features(x, 3)                                    # (12, 3, 4, 4)
    vals, imgs, pos = V.top_activations(net, x, 3, k=5, mode=mode, batch_size=5)
    for f in range(3):
        flat = a[:, f].reshape(12, -1)
        want = np.sort(flat.max(axis=1) if mode == "image" else flat.ravel())[::-1][:5]
        np.testing.assert_allclose(vals[f], want, rtol=1e-6)
        np.testing.assert_allclose(a[imgs[f], f, pos[f, :, 0], pos[f, :, 1]], vals[f], rtol=1e-6)
        if mode == "image":
            assert len(set(imgs[f])) == 5


def test_a_patch_alone_reproduces_its_activation(net_and_images):
    net, x = net_and_images
    rf = V.receptive_field(net, 3)
    vals, imgs, pos = V.top_activations(net, x, 3, k=9)
    for f in range(3):
        for t in range(9):
            patch = V.crop_patch(x[imgs[f, t]], rf, *pos[f, t])
            assert patch.shape == (1, 8, 8) and np.isfinite(patch).all()  # no padding: inside
            np.testing.assert_allclose(net.features(patch[None], 3)[0, f, 0, 0], vals[f, t], rtol=1e-5, atol=1e-6)


def test_padded_patch_marks_outside_pixels(rng):
    conv = nn.Conv2d(1, 2, 5, padding=2)
    net = nn.Sequential(conv)
    x = rng.random((4, 1, 9, 9)).astype(np.float32)
    rf = V.receptive_field(net, 0)
    vals, imgs, pos = V.top_activations(net, x, 0, k=9, mode="position")
    for f in range(2):
        for t in range(9):
            p = V.crop_patch(x[imgs[f, t]], rf, *pos[f, t])
            assert np.isnan(p).any() == (min(pos[f, t]) < 2 or max(pos[f, t]) > 6)
            got = float((np.nan_to_num(p) * conv.weight[f]).sum() + conv.bias[f])  # zero padding
            assert abs(got - vals[f, t]) < 1e-5


def test_fewer_images_than_k_leave_empty_slots(net_and_images):
    net, x = net_and_images
    vals, imgs, _ = V.top_activations(net, x[:3], 3, k=9)
    assert (imgs[:, 3:] == -1).all() and (imgs[:, :3] >= 0).all()
    with pytest.raises(ValueError, match="mode must be"):
        V.top_activations(net, x, 3, mode="pixel")


# ---- end to end
def test_visualize_command_writes_the_grids(lenet_checkpoint, tmp_path):
    path, _ = lenet_checkpoint
    out = tmp_path / "vis"
    assert cli.main(["visualize", path, "--images", "30", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["conv1_top9.png", "conv2_top9.png",
                                                     "layer1_filters.png"]
    assert cli.main(["visualize", path, "--images", "20", "--layers", "2", "--mode",
                     "position", "--out", str(tmp_path / "pos")]) == 0
    with pytest.raises(SystemExit, match="conv layer 3 does not exist"):
        cli.main(["visualize", path, "--layers", "3", "--out", str(out)])
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["visualize", str(tmp_path / "none.npz")])
