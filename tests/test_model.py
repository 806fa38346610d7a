import math

import pytest
import torch

from unetseg.model import UNet, autocast, count_conv_layers, count_parameters


def fig1_parameter_count(in_channels=1, classes=2, base=64, depth=4):
    """Parameters of the paper's Fig. 1 network, counted by hand level by level."""
    conv3 = lambda c_in, c_out: 9 * c_in * c_out + c_out  # noqa: E731
    widths = [base * 2**level for level in range(depth + 1)]
    total = conv3(in_channels, widths[0]) + conv3(widths[0], widths[0])
    for level in range(1, depth + 1):  # contracting path and bottom
        total += conv3(widths[level - 1], widths[level]) + conv3(widths[level], widths[level])
    for level in reversed(range(depth)):  # 2x2 up-conv, then two 3x3 on the concatenation
        total += 4 * widths[level + 1] * widths[level] + widths[level]
        total += conv3(2 * widths[level], widths[level]) + conv3(widths[level], widths[level])
    return total + widths[0] * classes + classes


def test_paper_network_layers_sizes_and_parameters():
    model = UNet()
    assert count_conv_layers(model) == 23
    assert fig1_parameter_count() == 31_030_658  # PAPER.md §1
    assert count_parameters(model) == fig1_parameter_count()
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 1, 572, 572)).shape == (1, 2, 388, 388)


@pytest.mark.parametrize("depth, base", [(2, 8), (3, 4)])
def test_parameter_count_other_sizes(depth, base):
    model = UNet(depth=depth, base_channels=base)
    assert count_parameters(model) == fig1_parameter_count(base=base, depth=depth)


def test_initialisation_std_is_sqrt_2_over_n():
    torch.manual_seed(0)
    model = UNet(depth=4, base_channels=64)
    conv = model.decoders[0][0]  # 3x3 on 1024 concatenated channels: N = 9 * 1024
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 1024)), rel=0.01)
    upconv = model.upconvs[0]  # fan_in of a 2x2 up-conv to 512 channels: 4 * 512 (release)
    assert upconv.weight.std().item() == pytest.approx(math.sqrt(2 / (4 * 512)), rel=0.01)
    assert all(m.bias.abs().max() == 0 for m in (conv, upconv))


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=4)
    x = torch.rand(1, 1, 60, 60)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def test_bf16_channels_last_runs_on_cpu_close_to_fp32():
    torch.manual_seed(0)
    model = UNet(depth=2, base_channels=8).eval()
    x = torch.rand(2, 1, 60, 60)
    with torch.no_grad():
        reference = model(x)
        fast = model.to(memory_format=torch.channels_last)
        with autocast(torch.device("cpu"), "bf16"):
            low = fast(x.contiguous(memory_format=torch.channels_last)).float()
    assert (low - reference).abs().max() < 0.05 * reference.abs().max()


def test_auto_precision_is_bf16_only_where_the_device_runs_it_natively(monkeypatch):
    from unetseg import model

    cpu = torch.device("cpu")
    monkeypatch.setattr(model, "cpu_bf16_instructions", lambda: [])
    assert model.resolved_precision("auto", cpu) == "fp32"  # emulated bf16 is slower (AVX2)
    monkeypatch.setattr(model, "cpu_bf16_instructions", lambda: ["avx512_bf16"])
    assert model.resolved_precision("auto", cpu) == "bf16"
    for chosen in ("fp32", "bf16", "fp16"):  # a choice is kept as it is
        assert model.resolved_precision(chosen, cpu) == chosen
    assert [model.resolved_channels_last(v) for v in ("auto", True, False)] == [True, True, False]


def test_auto_predicts_what_its_resolved_settings_predict(tmp_path, caplog):
    """predict with precision and channels_last auto equals predict with what auto chose on
    this machine, and says what that was."""
    import logging

    import numpy as np
    import tifffile

    from unetseg import io
    from unetseg.chunk import chunk_volume
    from unetseg.model import resolved_precision
    from unetseg.predict import predict_volume

    torch.manual_seed(0)
    network = UNet(depth=2, base_channels=4)
    torch.save(
        {"model_config": network.config, "model_state": network.state_dict()}, tmp_path / "m.pt"
    )
    tifffile.imwrite(
        tmp_path / "raw.tif", np.random.default_rng(0).integers(0, 255, (1, 60, 60), np.uint8)
    )
    chunk_volume(tmp_path / "raw.tif", tmp_path / "raw.zarr")
    chosen = resolved_precision("auto", torch.device("cpu"))
    common = dict(tile_out=28, block_px=56, device="cpu", out_dtype="float32")
    with caplog.at_level(logging.INFO):
        predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "auto.zarr",
                       precision="auto", channels_last="auto", **common)  # fmt: skip
    assert f"precision {chosen}, channels_last True" in caplog.text
    predict_volume(tmp_path / "m.pt", tmp_path / "raw.zarr", tmp_path / "chosen.zarr",
                   precision=chosen, channels_last=True, **common)  # fmt: skip
    auto, explicit = (io.open_zarr(tmp_path / f"{name}.zarr")[...] for name in ("auto", "chosen"))
    assert np.array_equal(auto, explicit)
    assert io.zarr_attrs(tmp_path / "auto.zarr")["precision"] == chosen  # what ran, recorded
