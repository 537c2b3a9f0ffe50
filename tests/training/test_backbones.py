import pytest
import torch

from faceid.backbones import available_backbones, build_backbone

SIZES = {"inception_resnet_v1": 160}


def test_registry_holds_every_family():
    assert set(available_backbones()) == {"iresnet18", "iresnet34", "iresnet50", "iresnet100", "mobilefacenet",
                                          "inception_resnet_v1", "resnet18", "resnet50", "small_cnn", "dlib_resnet"}


@pytest.mark.parametrize("name", ["iresnet18", "iresnet50", "mobilefacenet", "inception_resnet_v1", "resnet18",
                                  "resnet50", "small_cnn"])
def test_raw_embeddings_of_the_asked_dimension(name):
    torch.manual_seed(0)
    size = SIZES.get(name, 112)
    model = build_backbone(name, embedding_dim=64, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, size, size))
    assert out.shape == (3, 64)
    assert not torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-3)  # not L2-normalised


def test_parameter_counts_match_the_published_architectures():
    count = lambda name: sum(p.numel() for p in build_backbone(name, 512).parameters()) / 1e6  # noqa: E731
    assert count("iresnet50") == pytest.approx(43.6, abs=0.1)  # insightface: 43.6M
    assert count("iresnet100") == pytest.approx(65.2, abs=0.1)  # insightface: 65.2M


def test_small_inputs_and_bad_sizes():
    assert build_backbone("small_cnn", 32, input_size=32).eval()(torch.randn(2, 3, 32, 32)).shape == (2, 32)
    with pytest.raises(ValueError, match="divisible by 16"):
        build_backbone("iresnet18", 512, input_size=100)
    with pytest.raises(ValueError, match="unknown backbone 'resnet9'"):
        build_backbone("resnet9")
    with pytest.raises(ValueError, match="norm must be"):
        build_backbone("small_cnn", norm="layer")
