"""Fine-tuning from a pretrained model (`model.init`): exact weight loading, the checkpoint fixing the
architecture, backbone freezing and its own learning rate, frozen BatchNorm statistics, the class-means head,
the crop-size check, carried preprocessing/alignment, and compare-losses' as-is row. A tiny small_cnn
checkpoint made here stands in for a zoo model."""

import json

import cv2
import pytest
import torch

from faceid.backbones import build_backbone
from faceid.checkpoint import save_backbone_checkpoint
from faceid.cli import main
from faceid.config import load_config
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.model_input import ModelInput
from faceid.training.trainer import Trainer

SIZE = 32
PREPROCESSING = {"input_size": SIZE, "channel_order": "BGR", "mean": (0.4, 0.45, 0.5), "std": (0.3, 0.3, 0.3)}
TINY = ["device=cpu", "training.batch_size=16", "training.optimizer=sgd", "training.lr=0.05",
        "training.log_every_steps=1", "training.augmentation=none", "training.validate_every_epochs=null",
        "training.schedule={name: constant}", "evaluation.folds=2", "evaluation.pairs_per_fold=20",
        "data.validation_fraction=0.25", "loss.name=arcface", "loss.params={s: 16.0, m: 0.2}"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one thread avoids oversubscribing the shared CPU cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def crops(small_synthetic, tmp_path_factory):
    """The small synthetic set's aligned crops at the tiny checkpoint's input size."""
    root = tmp_path_factory.mktemp("crops32")
    for item in list_identity_folder(small_synthetic / "aligned"):
        (root / item.identity).mkdir(exist_ok=True)
        image = cv2.imread(str(item.path))
        small = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / item.identity / item.path.name), small)
    return root


@pytest.fixture(scope="module")
def pretrained(crops, tmp_path_factory):
    """A small_cnn checkpoint with BatchNorm statistics calibrated on the crops (so that its embeddings
    differ from image to image) and a preprocessing of its own."""
    torch.manual_seed(7)
    model = build_backbone("small_cnn", 16, SIZE, width=8)
    crops = [read_rgb(item.path) for item in list_identity_folder(crops)]
    images = torch.from_numpy(ModelInput(**PREPROCESSING).apply(crops))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for module in norms:
        module.momentum = None  # a cumulative average: one pass sets the statistics of the whole batch
    with torch.no_grad():
        model.train()(images)
    for module in norms:
        module.momentum = 0.1
    path = tmp_path_factory.mktemp("pretrained") / "tiny.pt"
    save_backbone_checkpoint(path, model, "small_cnn", 16, SIZE,
                             extra={"backbone_options": {"width": 8}, "preprocessing": PREPROCESSING,
                                    "alignment": "arcface_112"})
    return path


def _config(data, init, run_dir, *overrides):
    return load_config(None, [f"data.root={data}", f"model.init={init}", f"training.run_dir={run_dir}", *TINY,
                              *overrides])


def _checkpoint_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _same(state_a, state_b):
    return state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def _reference_model(path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = build_backbone("small_cnn", 16, SIZE, width=8)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def test_init_loads_the_weights_architecture_and_preprocessing(crops, pretrained, tmp_path):
    trainer = Trainer(_config(crops, pretrained, tmp_path / "run"), progress=False)
    assert _same(trainer.backbone.state_dict(), _checkpoint_state(pretrained))
    model = trainer.config.model  # the defaults (small_cnn, 128-d, 112 px) gave way to the checkpoint's
    assert (model.backbone, model.embedding_dim, model.input_size) == ("small_cnn", 16, SIZE)
    assert model.options == {"width": 8}
    assert trainer.model_input == ModelInput(**PREPROCESSING)


def test_a_contradicting_architecture_is_an_error(crops, pretrained, tmp_path):
    with pytest.raises(ValueError, match=r"model.input_size is 64 but .*tiny.pt has 32"):
        Trainer(_config(crops, pretrained, tmp_path / "run", "model.input_size=64"), progress=False)


def test_a_crop_size_other_than_the_checkpoints_is_an_error(small_synthetic, pretrained, tmp_path):
    with pytest.raises(ValueError, match=r"training data holds 112x112 crops, but model.init .* takes 32x32 crops "
                                         r"aligned with arcface_112"):
        Trainer(_config(small_synthetic / "aligned", pretrained, tmp_path / "run"), progress=False)


def test_frozen_backbone_stays_unchanged_then_trains(crops, pretrained, tmp_path):
    options = ["training.epochs=2", "training.freeze_backbone_epochs=1"]
    first = Trainer(_config(crops, pretrained, tmp_path / "run", *options), progress=False)
    head = first.loss.weight.detach().clone()
    first.train(until_step=first.steps_per_epoch)
    assert _same(first.backbone.state_dict(), _checkpoint_state(pretrained))  # weights and BN statistics
    assert not torch.equal(first.loss.weight.detach(), head)  # the head did train
    rest = Trainer(_config(crops, pretrained, tmp_path / "run", *options), resume="auto", progress=False)
    rest.train()
    assert rest.step == 2 * rest.steps_per_epoch
    trained = _checkpoint_state(tmp_path / "run" / "model.pt")
    assert not torch.equal(trained["features.0.0.weight"], _checkpoint_state(pretrained)["features.0.0.weight"])
    saved = torch.load(tmp_path / "run" / "model.pt", map_location="cpu", weights_only=True)
    assert saved["preprocessing"] == PREPROCESSING and saved["alignment"] == "arcface_112"
    assert saved["init"] == str(pretrained)


def test_backbone_lr_is_the_backbone_groups_lr(crops, pretrained, tmp_path):
    trainer = Trainer(_config(crops, pretrained, tmp_path / "run", "training.backbone_lr=0.001"), progress=False)
    trainer.train(until_step=1)
    backbone_group, loss_group = trainer.optimizer.param_groups
    assert {id(p) for p in backbone_group["params"]} == {id(p) for p in trainer.backbone.parameters()}
    assert backbone_group["lr"] == pytest.approx(0.001) and loss_group["lr"] == pytest.approx(0.05)


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_bn_stats_keeps_running_statistics(crops, pretrained, tmp_path, freeze):
    trainer = Trainer(_config(crops, pretrained, tmp_path / "run", f"training.freeze_bn_stats={str(freeze).lower()}"),
                      progress=False)
    trainer.train(until_step=2)
    before, after = _checkpoint_state(pretrained), trainer.backbone.state_dict()
    statistics = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics) == freeze
    assert not torch.equal(before["features.0.0.weight"], after["features.0.0.weight"])  # the weights train


@pytest.mark.parametrize(("loss", "vectors"), [("arcface", [("weight", True)]), ("lace", [("signatures", True)]),
                                               ("arcface+center", [("main.weight", True), ("aux.centers", False)])])
def test_class_means_head_init(crops, pretrained, tmp_path, loss, vectors):
    trainer = Trainer(_config(crops, pretrained, tmp_path / "run", f"loss.name={loss}", "loss.params={}"),
                      progress=False)
    model, preprocessing = _reference_model(pretrained), ModelInput(**PREPROCESSING)
    sums = {True: torch.zeros(trainer.train_set.num_classes, 16), False: torch.zeros(trainer.train_set.num_classes, 16)}
    counts = torch.zeros(trainer.train_set.num_classes)
    with torch.no_grad():
        for index in range(len(trainer.train_set)):
            crop, label = trainer.train_set.load(index)
            embedding = model(torch.from_numpy(preprocessing.apply([crop])))[0]
            sums[True][label] += embedding / embedding.norm()
            sums[False][label] += embedding
            counts[label] += 1
    for name, on_sphere in vectors:
        expected = sums[on_sphere] / counts[:, None]
        if on_sphere:
            expected = expected / expected.norm(dim=1, keepdim=True)
        actual = trainer.loss.get_parameter(name).detach()
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-4)


def test_random_head_init_leaves_the_head_alone(crops, pretrained, tmp_path):
    torch.manual_seed(0)
    first = Trainer(_config(crops, pretrained, tmp_path / "a", "model.init_head=random"), progress=False)
    second = Trainer(_config(crops, pretrained, tmp_path / "b", "model.init_head=random"), progress=False)
    means = Trainer(_config(crops, pretrained, tmp_path / "c"), progress=False)
    assert torch.equal(first.loss.weight, second.loss.weight)  # the seeded random initialisation
    assert not torch.equal(first.loss.weight, means.loss.weight)


def test_compare_losses_with_init_has_the_as_is_row(crops, pretrained, tmp_path, capsys):
    overrides = [f"--set={item}" for item in [f"data.root={crops}", *TINY, "training.epochs=1",
                                              "training.freeze_backbone_epochs=1"]]
    code = main(["compare-losses", *overrides, "--init", str(pretrained), "--loss", "softmax", "--out", str(tmp_path)])
    assert code == 0
    as_is, softmax = json.loads((tmp_path / "comparison.json").read_text())
    assert as_is["loss"] == "as is" and as_is["init"] == softmax["init"] == str(pretrained)
    # the backbone stayed frozen throughout, so the fine-tuned model embeds exactly as the pretrained one
    assert (as_is["accuracy"], as_is["auc"]) == (softmax["accuracy"], softmax["auc"])
    assert f"| {pretrained} as is | no training |" in capsys.readouterr().out



def test_a_loss_without_parameters_trains_the_backbone_from_the_start(crops, pretrained, tmp_path):
    trainer = Trainer(_config(crops, pretrained, tmp_path / "run", "loss.name=triplet", "loss.params={}",
                              "training.freeze_backbone_epochs=1"), progress=False)
    trainer.train(until_step=1)  # a frozen backbone would leave triplet nothing to train (and no gradient)
    assert not _same(trainer.backbone.state_dict(), _checkpoint_state(pretrained))
