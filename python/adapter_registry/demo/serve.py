"""The torch step: a LoRA on a tiny 2-layer Qwen2 (built from its config: nothing is
downloaded), stored with PEFT's own save_pretrained, picked as the best for that base model,
loaded back verified and run. Skipped, with the reason, where torch, peft or transformers is
missing: the rest of the demo runs on the core install."""

from __future__ import annotations

import importlib
import os
import time
import warnings
from typing import Any

from .steps import Play, first_missing
from .swarm import SEED

#: The base model of the torch step: a 2-layer Qwen2 built from its config.
TINY_BASE = "tiny/qwen2-2layer"


def torch_missing() -> str | None:
    """The first of torch, peft, transformers that cannot be found, or None."""
    return first_missing("torch", "peft", "transformers")


def serve(play: Play, torch_step: bool) -> dict[str, Any]:
    """The torch step where it can run (and ``torch_step``), else why it was skipped."""
    summary: dict[str, Any] = {
        "ran": False,
        "reason": None,
        "adapter": None,
        "logits_shape": None,
        "identical": None,
        "seconds": None,
    }
    missing = torch_missing() if torch_step else "--no-torch"
    if missing is None:
        play.say.title(
            f"serve: a LoRA on a tiny 2-layer Qwen2 ({TINY_BASE}), stored with PEFT, "
            "loaded back verified (importing torch, transformers and peft takes a while)"
        )
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        with warnings.catch_warnings():  # deprecation notices of the libraries, not of this demo
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            summary.update(_serve(play))
    else:
        summary["reason"] = (
            "--no-torch"
            if missing == "--no-torch"
            else f"{missing} is not installed (pip install 'adapter-registry[torch]')"
        )
        play.say.title(f"serve: skipped, {summary['reason']}")
    return {"serve": summary}


class _Tiny:
    """The libraries, the tiny base model (the same weights each time) and its input."""

    def __init__(self) -> None:
        self.torch = importlib.import_module("torch")
        self.peft = importlib.import_module("peft")
        self.transformers = importlib.import_module("transformers")
        self.tokens = self.torch.tensor([[1, 5, 9, 42, 7, 3, 99, 12]])

    def base_model(self) -> Any:
        config = self.transformers.Qwen2Config(
            vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        )  # fmt: skip
        config._name_or_path = TINY_BASE
        self.torch.manual_seed(SEED)
        return self.transformers.Qwen2ForCausalLM(config).eval()

    def logits(self, model: Any) -> Any:
        with self.torch.no_grad():
            return model(self.tokens).logits


def _serve(play: Play) -> dict[str, Any]:
    """Store a PEFT LoRA of a tiny Qwen2, pick the best for that base, load it, run it."""
    tiny, registry = _Tiny(), play.registry
    lora = tiny.peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False, lora_dropout=0.0,
    )  # fmt: skip
    trained = tiny.peft.get_peft_model(tiny.base_model(), lora).eval()
    expected, plain = tiny.logits(trained), tiny.logits(tiny.base_model())
    record = registry.store_peft_model(
        trained, task_type="bug-fix", source="manual", session_id=play.swarm.session,
        agent_id="serving",
    )  # fmt: skip
    registry.update_fitness(record.id, fitness_score=0.9, pass_rate=0.9)
    best = registry.query_best_for_task("bug-fix", base_model_id=TINY_BASE)
    play.say.indented(
        f"stored {record.id} with store_peft_model; best for {TINY_BASE}: {best and best.id}"
    )
    if best is None or best.id != record.id:
        play.result.problems.append("the tiny model's adapter was not the best for its base")
        return {"adapter": record.id}
    started = time.perf_counter()
    logits = tiny.logits(registry.load_peft(tiny.base_model(), best.id))
    seconds = time.perf_counter() - started
    identical = bool(tiny.torch.equal(logits, expected))
    changed = not bool(tiny.torch.equal(logits, plain))
    play.say.indented(
        f"load_peft (hashed as read) + forward pass in {seconds * 1000:.0f} ms: logits "
        f"{tuple(logits.shape)}, {'identical to' if identical else 'DIFFERENT from'} the "
        f"trained model's, {'changed' if changed else 'UNCHANGED'} from the base model's"
    )
    play.expect(identical and changed, "the loaded adapter does not reproduce the trained model")
    return {
        "ran": True,
        "adapter": best.id,
        "logits_shape": list(logits.shape),
        "identical": identical,
        "seconds": round(seconds, 6),
    }
