"""The demo's serving step: adapters by name, as a server gets them. An id, an alias and
``best:<task>`` resolved (each verified against its record first) to a directory and a content
id, the vLLM and SGLang flags that load one, and a tampered file refused before any server
could read it."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from ..errors import IntegrityError
from ..serving import ServedAdapter
from .steps import Play, flip_bit
from .swarm import TASKS

#: How many resolve() calls the median is taken over.
TIMED_CALLS = 50


def names(play: Play) -> dict[str, Any]:
    """Resolve an id, an alias and best:<task>; print the server flags; refuse a tampered file."""
    from ..cli.output import plain_table
    from ..cli.serve import server_flag

    registry, say = play.registry, play.say
    say.title("names: serve by name (an id, an alias, best:<task>), verified before hand-out")
    task = TASKS[0]
    best = registry.query_best_for_task(task)
    aliases = registry.aliases()
    wanted = [play.stored[0].id, *(["production"] if "production" in aliases else [])]
    wanted += [f"best:{task}"] if best is not None else []
    served = [registry.resolve(name) for name in wanted]
    say.indented(
        plain_table(
            ("NAME", "ADAPTER", "LORA_INT_ID"),
            [[s.name, s.id, str(s.lora_int_id)] for s in served],
            right=(2,),
        )
    )
    for s in served:
        expected = aliases.get(s.name, best.id if s.name.startswith("best:") and best else s.name)
        play.expect(s.id == expected, f"resolve({s.name!r}) gave {s.id}, not {expected}")
    shown = served[-1]
    say.indented(
        f"a static server configuration for {shown.name} (adapter-registry resolve "
        f"{shown.name} --format vllm / --format sglang):"
    )
    say.indented(f"  vllm serve {shown.base_model_id} --enable-lora {server_flag(shown, 'vllm')}")
    say.indented(f"  sglang: {server_flag(shown, 'sglang')}")
    say.indented(
        "or by name at request time: VLLM_ALLOW_RUNTIME_LORA_UPDATING=true loads our vLLM "
        "resolver plugin (adapter-registry[vllm])"
    )
    resolve_ms = _median_ms(play, shown.name)
    say.indented(f"resolve({shown.name!r}), files hashed each time: {resolve_ms:.2f} ms median")
    refused = _tampered(play, shown)
    return {
        "names": {
            "resolved": {s.name: s.id for s in served},
            "lora_int_ids": {s.name: s.lora_int_id for s in served},
            "resolve_ms": round(resolve_ms, 3),
            "tampered_refused": refused,
        }
    }


def _median_ms(play: Play, name: str) -> float:
    timings = []
    for _ in range(TIMED_CALLS):
        started_ns = time.perf_counter_ns()
        play.registry.resolve(name)
        timings.append(time.perf_counter_ns() - started_ns)
    return statistics.median(timings) / 1e6


def _tampered(play: Play, shown: ServedAdapter) -> bool:
    """Flip one bit of the adapter's config, ask for it by name, and put the bit back."""
    path = shown.directory / "adapter_config.json"
    mode = os.stat(path).st_mode & 0o777
    os.chmod(path, 0o644)
    flip_bit(str(path), 2)
    try:
        play.registry.resolve(shown.name)
        refusal = None
    except IntegrityError as err:
        refusal = str(err)
    finally:
        flip_bit(str(path), 2)
        os.chmod(path, mode)
    play.say.indented(f"one bit of {path.name} flipped: resolve({shown.name!r}) refused it:")
    play.say.indented(f"  {refusal}")
    play.expect(refusal is not None, "a tampered adapter was handed out")
    restored = play.registry.resolve(shown.name).id == shown.id
    play.say.indented(f"bit flipped back: resolve({shown.name!r}) serves {shown.id} again")
    play.expect(restored, "the restored adapter was not served")
    return refusal is not None
