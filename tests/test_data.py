"""CIFAR-10 loading on the real files, bad inputs, and the framework-neutral sampler."""
import pickle
import shutil

import numpy as np
import pytest

from bench.data import DataError, EpochSampler, augment_numpy, load_cifar10, normalize, pad_images
from bench.stacks.pytorch.data import augment_torch, epoch_rows_torch


@pytest.fixture(scope="module")
def cifar(cifar_dir):
    return load_cifar10(cifar_dir, download=False)


def test_real_data_shapes_classes_and_means(cifar):
    assert cifar.x_train.shape == (50000, 32, 32, 3) and cifar.x_test.shape == (10000, 32, 32, 3)
    assert cifar.x_train.dtype == np.uint8
    assert np.bincount(cifar.y_train).tolist() == [5000] * 10
    assert np.bincount(cifar.y_test).tolist() == [1000] * 10
    mean = cifar.x_train.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(mean, [0.4914, 0.4822, 0.4465], atol=2e-3)


def test_copy_is_told_apart_from_official_files(cifar):
    # the CI copy is the JPEG stand-in: its md5 values differ from the official ones
    assert cifar.kind.startswith("copy") or cifar.kind == "official"
    import hashlib

    from bench.data import OFFICIAL_MD5, data_kind
    official = all(hashlib.md5((cifar.source / f).read_bytes()).hexdigest() == m for f, m in OFFICIAL_MD5.items())
    assert (data_kind(cifar.source) == "official") == official


def test_normalized_data_is_standardised(cifar):
    x = normalize(cifar.x_train[:5000])
    assert np.abs(x.reshape(-1, 3).mean(0)).max() < 0.05
    assert np.abs(x.reshape(-1, 3).std(0) - 1).max() < 0.05


def _copy(cifar_dir, tmp_path):
    dst = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir / "cifar-10-batches-py", dst)
    return dst


def test_missing_directory_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"not found in .*build\.py"):
        load_cifar10(tmp_path / "nowhere", download=False)


def test_missing_file(cifar_dir, tmp_path):
    d = _copy(cifar_dir, tmp_path)
    (d / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(tmp_path, download=False)


def test_truncated_batch_file(cifar_dir, tmp_path):
    d = _copy(cifar_dir, tmp_path)
    raw = (d / "data_batch_2").read_bytes()
    (d / "data_batch_2").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match=r"data_batch_2 is truncated or corrupt"):
        load_cifar10(tmp_path, download=False)


def test_wrong_shapes(cifar_dir, tmp_path):
    d = _copy(cifar_dir, tmp_path)
    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((10000, 1024), np.uint8), b"labels": [0] * 10000}, f)
    with pytest.raises(DataError, match=r"expected \(N, 3072\) uint8"):
        load_cifar10(tmp_path, download=False)


def test_no_network_download_fails_clearly(tmp_path, monkeypatch):
    from bench import data
    with pytest.raises(DataError, match="download .* failed"):
        data.download_cifar10(tmp_path, url="http://127.0.0.1:9/cifar-10-python.tar.gz")


def test_sampler_is_deterministic_and_covers_the_epoch():
    s = EpochSampler(1000, 64, seed=3)
    a, b = s.epoch(0), EpochSampler(1000, 64, seed=3).epoch(0)
    assert len(a) == 1000 // 64
    for p, q in zip(a, b):
        assert (p.index == q.index).all() and (p.crop_x == q.crop_x).all() and (p.flip == q.flip).all()
    idx = np.concatenate([p.index for p in a])
    assert len(set(idx.tolist())) == len(idx)  # no repeats within an epoch
    assert not all((p.index == q.index).all() for p, q in zip(a, s.epoch(1)))  # epochs differ
    flips = np.concatenate([p.flip for p in a])
    assert 0.35 < flips.mean() < 0.65
    it = s.forever()  # the timing loops run past an epoch: epoch 0's plans, then epoch 1's
    endless = [next(it) for _ in range(2 * s.steps_per_epoch)]
    assert all((p.index == q.index).all() for p, q in zip(endless, a + s.epoch(1)))


def test_same_seed_same_batches_in_both_frameworks(cifar):
    """The torch (device-side) and numpy (host-side) augmentations of one plan give the same batch."""
    import torch
    x = pad_images(normalize(cifar.x_train[:512]))
    plan = EpochSampler(512, 128, seed=0).epoch(0)[1]
    host = augment_numpy(x, plan)
    dev = augment_torch(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), plan).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(host, dev)
    # the training loops' form: a whole epoch's rows copied once, sliced per step
    rows = epoch_rows_torch(EpochSampler(512, 128, seed=0), 0, "cpu")
    assert rows.dtype == torch.int32 and rows.shape == (512, 4)
    sliced = augment_torch(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), rows[128:256])
    np.testing.assert_array_equal(host, sliced.permute(0, 2, 3, 1).numpy())
    # the crop and flip really happened: a plain centre crop differs
    centre = x[plan.index, 4:36, 4:36]
    assert not np.array_equal(host, centre)


_KERAS_AUGMENT_CHECK = """
import numpy as np, keras
from bench.data import EpochSampler, augment_numpy, normalize, pad_images
from bench.data import plan_array
from bench.stacks.keras.data import PlanAugment
x = pad_images(normalize(np.load({path!r})))
layer = PlanAugment(x)
for plan in EpochSampler(len(x), 128, seed=3).epoch(2):
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(plan_array(plan))), augment_numpy(x, plan))
assert not layer.trainable_weights and len(layer.non_trainable_weights) == 1
print("checked", keras.backend.backend())
"""


@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_keras_device_augmentation_equals_numpy(cifar, backend, tmp_path):
    """Keras gathers each batch in-graph from the device-resident set: the same pixels as the host reference."""
    import importlib.util
    import os
    import subprocess
    import sys
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} not installed")
    np.save(tmp_path / "x.npy", cifar.x_train[:512])
    env = {**os.environ, "KERAS_BACKEND": backend}
    out = subprocess.run([sys.executable, "-c", _KERAS_AUGMENT_CHECK.format(path=str(tmp_path / "x.npy"))],
                         env=env, capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"checked {backend}" in out.stdout


def test_augment_numpy_crop_and_flip_semantics():
    x = np.arange(2 * 40 * 40).reshape(2, 40, 40, 1)
    from bench.data import BatchPlan
    plan = BatchPlan(np.array([1, 0]), np.array([0, 8]), np.array([8, 0]), np.array([False, True]))
    out = augment_numpy(x, plan)
    np.testing.assert_array_equal(out[0], x[1, 0:32, 8:40])
    np.testing.assert_array_equal(out[1], x[0, 8:40, 0:32][:, ::-1])


@pytest.mark.parametrize("channels_first", [False, True])
def test_normalize_padded_is_pad_of_normalize_bit_for_bit(channels_first):
    """The resident training set made in one allocation is exactly ``pad_images(normalize(x))`` (NHWC, or NCHW for
    torch): same float32 operations, same order, the border zero."""
    from bench.data import normalize, normalize_padded, pad_images
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    ref = pad_images(normalize(x))
    if channels_first:
        ref = np.ascontiguousarray(ref.transpose(0, 3, 1, 2))
    got = normalize_padded(x, channels_first)
    assert got.dtype == np.float32 and got.shape == ref.shape and got.flags.c_contiguous
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))  # bit for bit, -0.0 and all
