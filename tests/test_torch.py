"""Verified loading onto torch and PEFT, on a tiny Qwen2 built from its config (nothing is
downloaded): the logits after a round trip through the registry equal the logits before, to the
last bit, and a damaged file never yields a tensor."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM

from adapter_registry import (
    AdapterRegistry,
    IntegrityError,
    InvalidAdapterError,
    MissingDependencyError,
)

from conftest import at_core_call

BASE = "tiny/qwen2-2layer"
TOKENS = torch.tensor([[1, 5, 9, 42, 7, 3, 99, 12]])
META = {"task_type": "bug-fix", "source": "manual", "session_id": "torch-tests"}

#: Loading reads the record through the same API on either backend; the bytes are what matter.
BACKENDS = ["sqlite"]


def base_model(seed: int = 0) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    config._name_or_path = BASE
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(config).eval()


def lora_model(seed: int, r: int = 4) -> PeftModel:
    """A LoRA whose B matrices are not zero, so that it changes the output."""
    base = base_model()
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False, lora_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(1000 + seed)  # after the base, which seeds itself
    return get_peft_model(base, config).eval()


def logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits


@pytest.fixture
def stored(registry: AdapterRegistry) -> tuple[str, torch.Tensor]:
    model = lora_model(seed=1)
    expected = logits(model)
    assert not torch.equal(expected, logits(base_model())), "the LoRA must change the output"
    record = registry.store_peft_model(model, **META)
    return record.id, expected


def test_load_peft_gives_the_same_logits_to_the_last_bit(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor]
) -> None:
    adapter_id, expected = stored
    model = registry.load_peft(base_model(), adapter_id)
    assert isinstance(model, PeftModel) and not model.training
    assert torch.equal(logits(model), expected)


def test_plain_peft_loads_the_stored_directory_with_no_code_of_ours(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor]
) -> None:
    adapter_id, expected = stored
    model = PeftModel.from_pretrained(base_model(), str(registry.root / adapter_id)).eval()
    assert torch.equal(logits(model), expected)


def test_load_state_dict_matches_what_peft_saved(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor]
) -> None:
    from safetensors.torch import load_file

    adapter_id, _ = stored
    tensors = registry.load_state_dict(adapter_id)
    reference = load_file(registry.retrieve_by_id(adapter_id).file_path)
    assert tensors.keys() == reference.keys() and len(tensors) == 16
    for name, tensor in tensors.items():
        assert tensor.dtype == reference[name].dtype and torch.equal(tensor, reference[name])
        assert tensor.device.type == "cpu"


def _flip(path: Path, _other: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _truncate(path: Path, _other: Path) -> None:
    path.write_bytes(path.read_bytes()[:-8])


def _swap(path: Path, other: Path) -> None:
    path.write_bytes(other.read_bytes())


def _mode(path: Path, _other: Path) -> None:
    path.chmod(0o664)  # the bytes are intact, but the file was made writable


def _remove_directory(path: Path, _other: Path) -> None:
    shutil.rmtree(path.parent)


def _break_peft_link(path: Path, _other: Path) -> None:
    """PEFT's file made a copy, one bit off: the weights hold, the file PEFT loaders read does
    not. (A byte-identical sealed copy, what rsync -a without -H makes of the link, is taken:
    tests/test_relocation.py.)"""
    peft = path.with_name("adapter_model.safetensors")
    data = bytearray(peft.read_bytes())
    data[-1] ^= 1
    peft.unlink()
    peft.write_bytes(bytes(data))
    peft.chmod(0o444)


def _config_writable(path: Path, _other: Path) -> None:
    path.with_name("adapter_config.json").chmod(0o644)  # its bytes intact


def _remove_weights(path: Path, _other: Path) -> None:
    path.unlink()  # adapter_model.safetensors, the same bytes, stays


DAMAGE = {
    "flip": (_flip, "does not match|sha256"),
    "truncate": (_truncate, "size|bytes"),
    "swap": (_swap, "sha256"),
    "mode": (_mode, "mode 0664"),
    "directory removed": (_remove_directory, "cannot be (trusted|read)"),
    "PEFT link broken": (_break_peft_link, "adapter_model.safetensors is not the same file"),
    "config made writable": (_config_writable, "adapter_config.json has mode 0644"),
    # The weights are named, not their PEFT link, which still stands.
    "weights alone removed": (_remove_weights, r"adapter\.safetensors does not exist"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_file_never_yields_a_tensor(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor], damage: str
) -> None:
    adapter_id, _ = stored
    other = registry.store_peft_model(lora_model(seed=2), **META)
    weights = Path(registry.retrieve_by_id(adapter_id).file_path)
    weights.chmod(0o644)  # as root could, and sealed again after (but for the mode damage)
    do_damage, reason = DAMAGE[damage]
    do_damage(weights, Path(other.file_path))
    if do_damage is not _mode and weights.exists():
        weights.chmod(0o444)
    with pytest.raises(IntegrityError, match=f"adapter {adapter_id}: .*({reason})"):
        registry.load_state_dict(adapter_id)
    with pytest.raises(IntegrityError, match=f"adapter {adapter_id}: .*({reason})"):
        registry.load_peft(base_model(), adapter_id)
    assert registry.load_state_dict(other.id)  # the other adapter is untouched


def test_a_tampered_config_is_refused(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor]
) -> None:
    adapter_id, _ = stored
    config = registry.root / adapter_id / "adapter_config.json"
    config.chmod(0o644)
    config.write_text(config.read_text().replace('"lora_alpha": 8', '"lora_alpha": 80'))
    with pytest.raises(IntegrityError, match=r"adapter_config\.json does not match"):
        registry.load_peft(base_model(), adapter_id)


def test_two_adapters_in_one_model_and_switching_between_them(registry: AdapterRegistry) -> None:
    first, second = lora_model(seed=1), lora_model(seed=2)
    expected = {"first": logits(first), "second": logits(second)}
    assert not torch.equal(expected["first"], expected["second"])
    ids = {name: registry.store_peft_model(m, **META).id for name, m in
           (("first", first), ("second", second))}  # fmt: skip
    model = registry.load_peft(base_model(), ids["first"], adapter_name="first")
    registry.load_peft(model, ids["second"], adapter_name="second")
    assert set(model.peft_config) == {"first", "second"}
    for name in ("second", "first", "second"):
        model.set_adapter(name)
        assert torch.equal(logits(model), expected[name])


def test_store_peft_model_of_a_named_adapter(registry: AdapterRegistry) -> None:
    model = lora_model(seed=3, r=8)
    model.add_adapter("extra", LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    record = registry.store_peft_model(model, adapter_name="extra", **META)
    assert record.rank == 2 and record.base_model_id == BASE
    with pytest.raises(InvalidAdapterError, match="no adapter named 'nope'"):
        registry.store_peft_model(model, adapter_name="nope", **META)


def test_another_base_model_is_refused_unless_asked(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor]
) -> None:
    adapter_id, expected = stored
    other = base_model()
    other.name_or_path = "org/another-model"
    with pytest.raises(InvalidAdapterError, match="trained on 'tiny/qwen2-2layer'"):
        registry.load_peft(other, adapter_id)
    model = registry.load_peft(other, adapter_id, check_base_model=False)
    assert torch.equal(logits(model), expected)


def test_without_torch_the_error_names_the_extra(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor], tmp_path: Path
) -> None:
    adapter_id, _ = stored
    script = textwrap.dedent(
        """
        import sys
        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "peft"):
                    raise ImportError(name)
        sys.meta_path.insert(0, Refuse())
        from adapter_registry import AdapterRegistry, MissingDependencyError
        reg = AdapterRegistry(root=sys.argv[1], db_url=sys.argv[2])
        try:
            reg.load_state_dict(sys.argv[3])
        except MissingDependencyError as err:
            assert isinstance(err, ImportError)
            print(err)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(registry.root), registry.db_url, adapter_id],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'adapter-registry[torch]'" in done.stdout
    assert issubclass(MissingDependencyError, ImportError)


def test_the_stored_directory_copied_elsewhere_loads_too(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor], tmp_path: Path
) -> None:
    adapter_id, expected = stored
    copy = shutil.copytree(registry.root / adapter_id, tmp_path / "copy")
    model = PeftModel.from_pretrained(base_model(), str(copy)).eval()
    assert torch.equal(logits(model), expected)


def test_loaded_tensors_do_not_change_when_the_file_does(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor]
) -> None:
    adapter_id, _ = stored
    tensors = registry.load_state_dict(adapter_id)
    before = {name: t.clone() for name, t in tensors.items()}
    weights = Path(registry.retrieve_by_id(adapter_id).file_path)
    weights.chmod(0o644)
    with open(weights, "r+b") as f:  # in place, as a later writer (or a mapping) would
        f.seek(200)
        f.write(bytes(range(256)) * 16)
    for name, tensor in tensors.items():
        assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize("load", ["load_state_dict", "load_peft"])
def test_a_write_during_the_load_never_reaches_a_tensor(
    registry: AdapterRegistry, stored: tuple[str, torch.Tensor], load: str
) -> None:
    """The file is overwritten at the first moment after the core has read and hashed it,
    before any tensor exists: the tensors are still the verified bytes (a load that read the
    file again, or mapped it, would hand out the new ones), and the next load refuses."""
    adapter_id, expected = stored
    weights = Path(registry.retrieve_by_id(adapter_id).file_path)
    original = weights.read_bytes()
    verified = safetensors.torch.load(original)

    def overwrite() -> None:
        weights.chmod(0o644)  # as root, or the owner, could
        with open(weights, "r+b") as f:  # in place: the same inode, the PEFT link holds
            f.seek(len(original) // 2)  # tensor data, not the header
            f.write(bytes(range(256)) * 16)
        weights.chmod(0o444)

    with at_core_call("read_verified", overwrite, event="c_return") as ran:
        if load == "load_state_dict":
            tensors = registry.load_state_dict(adapter_id)
            assert sorted(tensors) == sorted(verified)
            for name, tensor in tensors.items():
                assert torch.equal(tensor, verified[name]), name
        else:
            model = registry.load_peft(base_model(), adapter_id)
            assert torch.equal(logits(model), expected)
    assert ran == ["read_verified"] and weights.read_bytes() != original  # it landed mid-load
    with pytest.raises(IntegrityError, match=f"adapter {adapter_id}: .*sha256"):
        registry.load_state_dict(adapter_id)


def test_a_refused_adapter_leaves_the_callers_model_as_it_was(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    # q_proj weights under a config that also targets v_proj: storable (generic target lists
    # are common), but loading would give v_proj a LoRA nobody trained.
    only_q = get_peft_model(
        base_model(), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False)
    )
    only_q.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    config["target_modules"] = ["q_proj", "v_proj"]
    record = registry.store(tmp_path / "saved", config=config, **META)

    fresh = base_model()
    before = logits(fresh)
    with pytest.raises(InvalidAdapterError, match="do not fit the model: missing"):
        registry.load_peft(fresh, record.id)
    assert not any("lora_" in name for name, _ in fresh.named_modules())
    assert torch.equal(logits(fresh), before)

    host = registry.load_peft(base_model(), registry.store_peft_model(lora_model(1), **META).id)
    with_one = logits(host)
    with pytest.raises(InvalidAdapterError, match="do not fit the model"):
        registry.load_peft(host, record.id, adapter_name="broken")
    assert set(host.peft_config) == {"default"} and torch.equal(logits(host), with_one)


def test_every_safetensors_dtype_loads_as_safetensors_loads_it(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    from safetensors.torch import load_file, save_file

    model = lora_model(seed=4)
    model.save_pretrained(tmp_path / "saved")
    path = tmp_path / "saved" / "adapter_model.safetensors"
    tensors = load_file(path)
    names = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16",
             "float64", "complex64", "float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu",
             "uint16", "uint32", "uint64"]  # fmt: skip
    for i, name in enumerate(names):
        raw = torch.arange(3 + i, dtype=torch.uint8) * 37
        width = torch.empty(0, dtype=getattr(torch, name)).element_size()
        tensors[f"extra.{name}"] = torch.cat([raw] * width).view(getattr(torch, name))
    save_file(tensors, path)
    record = registry.store(tmp_path / "saved", **META)
    loaded, reference = registry.load_state_dict(record.id), load_file(record.file_path)
    assert loaded.keys() == reference.keys()
    for name, tensor in loaded.items():
        assert tensor.dtype == reference[name].dtype, name
        assert torch.equal(tensor.view(torch.uint8), reference[name].view(torch.uint8)), name


def test_our_peft_calls_never_reach_for_a_hub(
    registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The base model's name, tiny/qwen2-2layer, is shaped like a hub id: PEFT's own
    save_pretrained looks it up unless hub access is off, and ours turns it off."""
    import huggingface_hub.constants

    from adapter_registry.torch import _offline

    lookups: list[str] = []

    def no_network(host: Any, *args: Any, **kwargs: Any) -> Any:
        lookups.append(str(host))
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    model = lora_model(seed=1)
    model.save_pretrained(tmp_path / "plain")  # PEFT's defaults, hub access on: it looks
    assert lookups, "this PEFT no longer looks up the base model; the test needs a new probe"
    lookups.clear()
    with _offline():
        model.save_pretrained(tmp_path / "offline")
    record = registry.store_peft_model(model, **META)
    registry.load_peft(base_model(), record.id)
    assert lookups == []
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # put back as it was
