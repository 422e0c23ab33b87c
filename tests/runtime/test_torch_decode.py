"""torchvision's decoding path (``Predictor(decoder="torchvision")``, nvJPEG on CUDA), checked here on the CPU,
where the same code runs with libjpeg-turbo: its pixels against the CPU definition, its fallbacks, and the
Predictor on it, for the torch backend and for a graph with a uint8 input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import Preprocessing
from core.errors import BadInputError, ConfigError
from core.preprocessing import preprocess
from runtime import FailedItem, Predictor
from runtime.backends import make_runner
from runtime.benchmark import synthetic_jpegs
from runtime.torch_decode import PIXEL_LIMITS, decoder_parity
from tests.helpers import facts_of

pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Larger than the input, another aspect: the resize does real work."""
    return synthetic_jpegs(tmp_path_factory.mktemp("jpegs"), 8, size=(160, 120))


@pytest.fixture(scope="module")
def odd_items(jpegs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list:
    """A PNG (not torchvision's to decode), a JPEG, a truncated JPEG, JPEG bytes, a PIL image, an HWC
    array and a preprocessed float32 array."""
    folder = tmp_path_factory.mktemp("odd")
    png = folder / "a.png"
    Image.open(jpegs[0]).save(png)
    truncated = folder / "cut.jpg"
    truncated.write_bytes(jpegs[1].read_bytes()[:300])
    array = np.asarray(Image.open(jpegs[5]))
    preprocessed = preprocess(jpegs[6], 64, Preprocessing())
    return [str(png), str(jpegs[2]), str(truncated), jpegs[3].read_bytes(), Image.open(jpegs[4]), array, preprocessed]


def test_torchvisions_pixels_on_the_cpu_are_the_definitions_within_a_level(
    jpegs: list[Path], demo_data: Path, fp32_graph: Path
) -> None:
    facts = facts_of(fp32_graph).serving()
    files = [*jpegs, *sorted((demo_data / "val").glob("*.jpg"))[:8]]
    parity = decoder_parity(files, facts)
    assert parity.passed and parity.images == 16 and parity.fallbacks == 0
    # libjpeg-turbo decodes as Pillow does; only the resize's float rounding remains.
    assert parity.max_levels <= 1 and parity.mean_levels <= 0.5 < PIXEL_LIMITS["mean"]


def test_the_gate_fails_a_decoder_that_decodes_nothing_or_differs(
    fp32_graph: Path, jpegs: list[Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from runtime import torch_decode

    facts = facts_of(fp32_graph).serving()
    decoder = torch_decode.TorchDecoder(facts, "cpu")
    assert decoder.check().passed  # generated JPEGs of odd sizes

    def undecodable(*args, **kwargs):
        raise RuntimeError("not here")

    monkeypatch.setattr(decoder, "_decode_jpeg", undecodable)
    parity = decoder_parity(jpegs, facts, decoder=decoder)  # every JPEG fell back to the CPU: no evidence
    assert (parity.fallbacks, parity.passed) == (len(jpegs), False)
    monkeypatch.undo()
    monkeypatch.setattr(torch_decode, "PIXEL_LIMITS", {"mean": 0.0, "max": 0})  # any difference fails
    with pytest.raises(ConfigError, match="does not give the CPU definition's pixels .*decoder='pillow'"):
        torch_decode.gated_decoder(facts, "cpu", strict=True)
    assert torch_decode.gated_decoder(facts, "cpu", strict=False) is None and "decoding with Pillow" in caplog.text
    assert not torch_decode.wants_torchvision("auto", "torch", "cpu") and torch_decode.wants_torchvision(
        "auto", "tensorrt", "cuda"
    )


@pytest.mark.parametrize("artifact", ["checkpoint", "uint8 graph"])
def test_the_predictor_on_torchvision_answers_as_on_pillow_and_falls_back_per_image(
    artifact: str, trained_checkpoint: Path, uint8_graph: Path, odd_items: list
) -> None:
    path = trained_checkpoint if artifact == "checkpoint" else uint8_graph
    with Predictor(path, device="cpu") as pillow, Predictor(path, device="cpu", decoder="torchvision") as torch:
        assert pillow._decoder is None and torch._decoder is not None  # auto on a CPU: Pillow
        expected = pillow.predict(odd_items, skip_bad=True)
        results = torch.predict(odd_items, skip_bad=True)
        with pytest.raises(BadInputError, match=r"item 2 .*cut.jpg"):
            torch.predict(odd_items)
    assert isinstance(results[2], FailedItem) and isinstance(expected[2], FailedItem)
    assert results[2].error == expected[2].error
    if artifact == "uint8 graph":  # a preprocessed array is refused by an artifact that takes pixels, on both paths
        assert isinstance(results[6], FailedItem) and results[6].error == expected[6].error
    for index in (0, 1, 3, 4, 5) if artifact == "uint8 graph" else (0, 1, 3, 4, 5, 6):
        gap = np.abs(results[index].scores - expected[index].scores).max()
        assert gap <= (2e-2 if index in (1, 3) else 1e-6), index  # only the two JPEGs take torchvision
        assert results[index].scores.dtype == np.float32


def test_an_image_over_the_pixel_bound_is_refused_by_name_before_decoding(
    trained_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime import torch_decode

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200)).save(buffer, format="JPEG")
    monkeypatch.setattr(torch_decode, "MAX_PIXELS", 50_000)
    monkeypatch.setattr("core.preprocessing.MAX_PIXELS", 50_000)
    with (
        Predictor(trained_checkpoint, device="cpu", decoder="torchvision") as predictor,
        pytest.raises(BadInputError, match="300×200 pixels; images above"),
    ):
        predictor.predict([buffer.getvalue()])


def test_unknown_decoders_and_torch_options_elsewhere_are_refused(fp32_graph: Path, trained_checkpoint: Path) -> None:
    with pytest.raises(ConfigError, match="unknown decoder 'nvjpeg'; choose one of auto, pillow, torchvision"):
        Predictor(fp32_graph, decoder="nvjpeg")
    with pytest.raises(ConfigError, match="channels_last and cuda_graphs are torch-backend options"):
        Predictor(fp32_graph, cuda_graphs=True)
    with pytest.raises(ConfigError, match="CUDA graphs: CUDA only; drop the option"):
        Predictor(trained_checkpoint, device="cpu", cuda_graphs=True)


def test_channels_last_gives_the_same_logits(trained_checkpoint: Path, jpegs: list[Path]) -> None:
    images = np.random.default_rng(0).standard_normal((4, 3, 64, 64), dtype=np.float32)
    outputs = []
    for channels_last in (False, True):
        with make_runner(trained_checkpoint, device="cpu", channels_last=channels_last) as runner:
            outputs.append(runner.infer({"images": images})["logits"])
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)


def test_the_command_line_decodes_with_torchvision_and_times_it(
    trained_checkpoint: Path, jpegs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from runtime.commands import main

    arguments = ["predict", str(trained_checkpoint), *map(str, jpegs[:3]), "--device", "cpu", "--json"]
    outputs = []
    for decoder in ("pillow", "torchvision"):
        assert main([*arguments, "--decoder", decoder]) == 0
        outputs.append(json.loads(capsys.readouterr().out)["results"])
    for pillow, torch in zip(*outputs, strict=True):
        assert max(abs(pillow["scores"][name] - torch["scores"][name]) for name in pillow["scores"]) <= 2e-2
    timed = ["benchmark", str(trained_checkpoint), "--device", "cpu", "--decoder", "torchvision", "--channels-last"]
    timed += ["--include-preprocessing", "--images", str(jpegs[0].parent), "--batch-sizes", "2", "--rounds", "1"]
    assert main([*timed, "--iterations", "1", "--warmup", "0"]) == 0
    assert "| JPEG files |" in capsys.readouterr().out
