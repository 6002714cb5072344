"""The measured backend choice (models/choice.py), its mechanics on any CPU: fake encoders on a
fake clock, each taking the time its rate says."""

import json

import pytest

from jobping_pipeline.models.choice import Candidate, ChoiceCache, candidate_paths, choose, describe, measure
from jobping_pipeline.models.cpu import Cpu

AVX2 = Cpu("AMD EPYC (AVX2)", frozenset({"avx2", "fma"}), 2, 2450.0)
AMX = Cpu("Intel Xeon (AMX)", frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"}), 2, 2000.0)
TEXTS = ["a posting of real length"] * 32
VERSIONS = {"torch": "2.13.0", "onnxruntime": "1.23.0", "openvino": "2025.3"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Paths:
    """Opens fake paths that run at the given texts per second on ``clock``."""

    def __init__(self, clock: Clock, rates: dict[str, float], broken: tuple[str, ...] = ()) -> None:
        self.clock, self.rates, self.broken, self.opened = clock, rates, broken, []

    def __call__(self, candidate: Candidate):
        self.opened.append(candidate.name)
        if candidate.name in self.broken:
            raise RuntimeError(f"{candidate.name} does not run here")

        def encode(texts, batch_size):
            self.clock.now += len(texts) / self.rates[candidate.name]

        return encode


AVX2_RATES = {"torch fp32": 15.3, "onnx fp32": 15.1, "openvino fp32": 22.1, "onnx int8": 28.1, "openvino int8": 31.0}
EXACT_AVX2 = {"torch fp32", "onnx fp32", "openvino fp32"}


def test_the_fastest_exact_path_wins_and_int8_is_measured_on_request_but_never_chosen(tmp_path):
    clock = Clock()
    paths = Paths(clock, AVX2_RATES)
    first_use = choose("m", ChoiceCache(tmp_path), paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock, lossy=True)
    assert {path.name for path in first_use.paths} == EXACT_AVX2, "a model's first use measures no int8 path"
    assert "backends --measure" in describe(first_use)[-1]
    choice = choose(
        "m", ChoiceCache(tmp_path), paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock, remeasure=True, lossy=True
    )
    assert (choice.chosen, choice.backend, choice.precision) == ("openvino fp32", "openvino", "fp32")
    by_name = {path.name: path for path in choice.paths}
    assert set(by_name) == set(AVX2_RATES)
    assert by_name["openvino fp32"].x_torch_fp32 == pytest.approx(22.1 / 15.3)
    assert by_name["openvino fp32"].peak_percent == pytest.approx(100 * 22.1 * 5.36 / 156.8)
    assert by_name["onnx int8"].lossy and by_name["onnx int8"].texts_per_second > by_name["openvino fp32"].texts_per_second
    table = describe(choice)
    assert any(line.startswith("openvino fp32") and line.endswith("<- chosen") for line in table)
    assert any(line.startswith("onnx int8") and "lossy" in line for line in table)
    assert table[-1].startswith("fastest int8 here: openvino int8: JOBPING_QUANTIZATION=int8 JOBPING_BACKEND=openvino")


def test_bf16_paths_are_measured_only_where_the_cpu_runs_bf16_natively():
    assert {path.name for path in candidate_paths(AVX2)} == EXACT_AVX2
    assert {"torch bf16", "openvino bf16"} <= {path.name for path in candidate_paths(AMX)}
    assert {path.name for path in candidate_paths(AMX, precision="fp32")} == EXACT_AVX2
    assert {path.name for path in candidate_paths(AMX, precision="fp32", lossy=True)} == EXACT_AVX2 | {"onnx int8", "openvino int8"}


def test_the_cache_is_reused_and_a_changed_cpu_or_runtime_measures_again(tmp_path):
    clock, cache = Clock(), ChoiceCache(tmp_path)
    paths = Paths(clock, AVX2_RATES)
    first = choose("m", cache, paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock)
    opened = len(paths.opened)
    again = choose("m", ChoiceCache(tmp_path), paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock)
    assert len(paths.opened) == opened and again == first, "read from the cache, nothing opened"
    more_cores = Cpu(AVX2.model, AVX2.flags, 4, AVX2.mhz)
    choose("m", cache, paths, TEXTS, lambda: 5.36, cpu=more_cores, versions=VERSIONS, clock=clock)
    assert len(paths.opened) == 2 * opened
    choose("m", cache, paths, TEXTS, lambda: 5.36, cpu=AVX2, versions={**VERSIONS, "openvino": "2026.0"}, clock=clock)
    assert len(paths.opened) == 3 * opened
    choose("another model", cache, paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock)
    assert len(paths.opened) == 4 * opened
    choose("m", cache, paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock, remeasure=True)
    assert len(paths.opened) == 5 * opened


def test_a_path_that_cannot_run_here_is_left_out(tmp_path):
    clock, lines = Clock(), []
    paths = Paths(clock, AVX2_RATES, broken=("openvino fp32",))
    choice = choose("m", ChoiceCache(tmp_path), paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock, log=lines.append)
    assert choice.chosen == "torch fp32" and "openvino fp32" not in {path.name for path in choice.paths}
    assert any("openvino fp32 left out" in line for line in lines)


def test_rounds_are_interleaved_and_bounded_in_time():
    clock, order = Clock(), []

    def path(name, seconds):
        def encode(texts, batch_size):
            order.append(name)
            clock.now += seconds
        return encode

    rates = measure({"a": path("a", 10.0), "b": path("b", 5.0)}, TEXTS, clock=clock, budget_seconds=20.0, max_rounds=5)
    assert order == ["a", "b", "a", "b"], "the round that crosses the budget is the last"
    assert rates == {"a": [3.2, 3.2], "b": [6.4, 6.4]}


def test_a_cache_that_cannot_be_written_measures_and_says_so(tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")  # even root cannot make a folder here
    clock, lines = Clock(), []
    choice = choose(
        "m", ChoiceCache(not_a_folder), Paths(clock, AVX2_RATES), TEXTS, lambda: 5.36,
        cpu=AVX2, versions=VERSIONS, clock=clock, log=lines.append,
    )
    assert choice.chosen == "openvino fp32"
    assert any("cannot be written" in line for line in lines)


def test_an_entry_this_version_cannot_read_is_measured_again(tmp_path):
    clock, cache = Clock(), ChoiceCache(tmp_path)
    paths = Paths(clock, AVX2_RATES)
    first = choose("m", cache, paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock)
    cache.path.write_text(json.dumps({first.key: {"chosen": "openvino fp32"}}))
    opened = len(paths.opened)
    assert choose("m", cache, paths, TEXTS, lambda: 5.36, cpu=AVX2, versions=VERSIONS, clock=clock).chosen == "openvino fp32"
    assert len(paths.opened) == 2 * opened
