"""Recipes and short real trainings of a small twin in both frameworks."""

import numpy as np
import pytest

from bench.zoo.recipes import RECIPES, recipe_for


def test_recipes_by_name_and_overrides():
    assert set(RECIPES) == {"paper", "keras-example", "slides", "fast", "smoke"}
    p = recipe_for("paper")
    assert (p.optimizer, p.lr, p.batch_size, p.epochs, p.weight_decay) == ("sgd", 0.1, 128, 164, 1e-4)
    d = recipe_for("paper", "densenet")
    assert d.nesterov and d.batch_size == 64 and d.epochs == 300
    assert recipe_for("fast", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_for("papr")
    with pytest.raises(ValueError, match="unknown recipe field"):
        recipe_for("paper", momentun=0.5)


def test_paper_schedule_steps_at_half_and_three_quarters():
    r = recipe_for("paper", epochs=8)
    lrs = [r.lr_at(e * 10, 10) for e in range(8)]
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)


def test_keras_example_schedule():
    r = recipe_for("keras-example")
    assert r.lr_at(80 * 5, 5) == pytest.approx(1e-3) and r.lr_at(81 * 5, 5) == pytest.approx(1e-4)
    assert r.lr_at(181 * 5, 5) == pytest.approx(5e-7)


@pytest.mark.parametrize("name", ["paper", "keras-example", "slides", "fast", "smoke"])
def test_keras_schedule_equals_python_formula(name):
    import keras

    from bench.stacks.keras.optimizers import RecipeSchedule
    r = recipe_for(name, epochs=12)
    sched = RecipeSchedule(r, steps_per_epoch=7)
    steps = np.arange(0, 12 * 7)
    got = keras.ops.convert_to_numpy(sched(keras.ops.convert_to_tensor(steps)))
    np.testing.assert_allclose(got, [r.lr_at(int(s), 7) for s in steps], rtol=1e-5)


def test_coupled_weight_decay_matches_torch_sgd():
    """One SGD step with weight decay and momentum gives the same weights in Keras and torch."""
    import keras
    import torch

    from bench.stacks.keras.optimizers import CoupledSGD
    w0 = np.array([1.0, -2.0, 3.0], dtype="float32")
    g = np.array([0.1, 0.2, -0.3], dtype="float32")
    tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    topt = torch.optim.SGD([tw], lr=0.1, momentum=0.9, weight_decay=0.01)
    kv = keras.Variable(w0.copy())
    kopt = CoupledSGD(learning_rate=0.1, momentum=0.9, l2=0.01)
    for _ in range(3):
        tw.grad = torch.from_numpy(g.copy())
        topt.step()
        kopt.apply([keras.ops.convert_to_tensor(g)], [kv])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kv), tw.detach().numpy(), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_short_training_rises_above_chance(framework, cifar_dir, tmp_path):
    """resnet20_v1, 2 epochs on 2,048 real images: test accuracy well above 10%, rows and resume work."""
    from bench.data import load_cifar10
    from bench.stacks import get_stack
    from bench.stacks.base import TrainConfig
    data = load_cifar10(cifar_dir, download=False)
    r = recipe_for("fast", epochs=2, batch_size=64, lr=0.1)
    ck = str(tmp_path / ("ck.pt" if framework == "torch" else "ck.keras"))
    rows = []
    cfg = TrainConfig("resnet20_v1", r, train_subset=2048, test_subset=1000, progress=False, checkpoint=ck)
    train = get_stack(framework).train
    train(cfg, data, rows.append)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[-1]["test_acc"] > 0.2 and rows[-1]["train_acc"] > 0.2
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[0]["null_reason"]  # CPU: no allocator peak, and it says why
    # a longer recipe resumes from epoch 3: the checkpoint hands back the rows it holds (epochs 1-2, as they were
    # written, for a driver that lost them; bench.measures.training writes only those missing), then trains epoch 3
    more = []
    train(TrainConfig("resnet20_v1", recipe_for("fast", epochs=3, batch_size=64, lr=0.1), train_subset=2048,
                      test_subset=1000, progress=False, checkpoint=ck), data, more.append)
    assert [row["epoch"] for row in more] == [1, 2, 3]
    assert [(m["epoch"], m["test_acc"], m["train_loss"]) for m in more[:2]] == \
        [(o["epoch"], o["test_acc"], o["train_loss"]) for o in rows]


@pytest.mark.parametrize("nesterov", [False, True])
def test_keras_sgd_follows_torch_momentum_while_the_lr_moves(nesterov):
    """PyTorch's momentum convention (lr scales the buffer at each step), also when the lr changes every step."""
    import keras
    import torch

    from bench.stacks.keras.optimizers import CoupledSGD
    w0 = np.array([1.0, -2.0, 3.0], dtype="float64")
    tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    topt = torch.optim.SGD([tw], lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    kv = keras.Variable(w0.copy(), dtype="float64")
    lr = keras.Variable(0.1, dtype="float64", trainable=False)
    kopt = CoupledSGD(learning_rate=lambda: lr, momentum=0.9, nesterov=nesterov, l2=0.01)
    rng = np.random.default_rng(0)
    for step in range(4):
        g = rng.standard_normal(3)
        for group in topt.param_groups:
            group["lr"] = 0.1 * (step + 1)
        lr.assign(0.1 * (step + 1))
        tw.grad = torch.from_numpy(g.copy())
        topt.step()
        kopt.apply([keras.ops.convert_to_tensor(g)], [kv])
    # Keras keeps its lr and momentum in float32 (~5e-8); the convention of Keras' own SGD is 1e-2 away
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kv), tw.detach().numpy(), rtol=1e-6)


def test_keras_adam_follows_torch_adam():
    """Adam with PyTorch's epsilon placement and value (1e-8), coupled weight decay, 4 steps."""
    import keras
    import torch

    from bench.stacks.keras.optimizers import CoupledAdam
    w0 = np.array([1.0, -2.0, 3.0], dtype="float64")
    tw = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    topt = torch.optim.Adam([tw], lr=1e-3, weight_decay=1e-4)
    kv = keras.Variable(w0.copy(), dtype="float64")
    kopt = CoupledAdam(learning_rate=1e-3, l2=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(4):
        g = rng.standard_normal(3) * 1e-6  # small gradients: where the epsilon convention shows
        tw.grad = torch.from_numpy(g.copy())
        topt.step()
        kopt.apply([keras.ops.convert_to_tensor(g)], [kv])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kv), tw.detach().numpy(), rtol=1e-7)


def test_keras_checkpoint_round_trip_and_wrong_model(tmp_path):
    """save_checkpoint/load_checkpoint restore weights and optimizer state; another model's file is refused."""
    import keras

    from bench.stacks.keras.optimizers import CoupledSGD
    from bench.stacks.keras.train import load_checkpoint, save_checkpoint
    from bench.zoo import build
    net = build("resnet20_v1", "keras")
    opt = CoupledSGD(learning_rate=0.1, momentum=0.9)
    opt.build(net.trainable_variables)
    opt.iterations.assign(7)
    path = str(tmp_path / "ck.npz")
    save_checkpoint(path, net, opt, epoch=3)
    other = build("resnet20_v1", "keras")
    opt2 = CoupledSGD(learning_rate=0.1, momentum=0.9)
    opt2.build(other.trainable_variables)
    assert load_checkpoint(path, other, opt2) == (3, [])
    assert int(keras.ops.convert_to_numpy(opt2.iterations)) == 7
    for a, b in zip(net.weights, other.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    wrong = build("plain20", "keras")
    opt3 = CoupledSGD(learning_rate=0.1)
    opt3.build(wrong.trainable_variables)
    with pytest.raises(ValueError, match="another model"):
        load_checkpoint(path, wrong, opt3)


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_runs(framework, precision, cifar_dir):
    """bf16 and fp16 (mixed: torch autocast + GradScaler, Keras mixed policies + loss scaling) train and give finite rows."""
    import math

    from bench.data import load_cifar10
    from bench.stacks import get_stack
    from bench.stacks.base import TrainConfig
    data = load_cifar10(cifar_dir, download=False)
    rows = []
    cfg = TrainConfig("resnet20_v1", recipe_for("fast", epochs=1, batch_size=64), precision=precision,
                      train_subset=256, test_subset=100, progress=False)
    if framework == "torch":
        get_stack("torch").train(cfg, data, rows.append)
    else:
        import keras
        try:
            get_stack("keras").train(cfg, data, rows.append)
            assert keras.config.dtype_policy().name == {"bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[precision]
        finally:
            keras.config.set_dtype_policy("float32")  # the policy is global: leave it as the other tests expect
    assert len(rows) == 1 and math.isfinite(rows[0]["train_loss"]) and math.isfinite(rows[0]["test_loss"])
    assert 0.0 <= rows[0]["test_acc"] <= 1.0


def test_keras_tensorflow_fit_data_keeps_every_batch_in_order_without_autotune():
    """Keras on TensorFlow trains from a tf.data pipeline of the same arrays (KerasTensorFlowStack.fit_data): the same
    batches in the same order, the last one short, and tf.data's autotuning off (its thread made each epoch's ``fit``
    wait 0-10 s at its end); the other backends get the arrays themselves."""
    pytest.importorskip("tensorflow")
    from bench.stacks import get_stack
    from bench.stacks.keras import KerasStack
    x, y = np.arange(40, dtype=np.int32).reshape(10, 4), np.arange(10)
    got = get_stack("keras", "tensorflow").fit_data(x, y, 3)
    assert set(got) == {"x"}
    batches = [(a.numpy(), b.numpy()) for a, b in got["x"]]
    assert [len(b) for _, b in batches] == [3, 3, 3, 1]
    assert np.array_equal(np.concatenate([a for a, _ in batches]), x)
    assert np.array_equal(np.concatenate([b for _, b in batches]), y)
    assert got["x"].options().autotune.enabled is False
    plain = KerasStack.fit_data(None, x, y, 3)
    assert plain["x"] is x and plain["y"] is y and plain["batch_size"] == 3
