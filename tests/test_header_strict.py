"""The safetensors header parser against an oracle that is not built on serde (issue 12, item
9), and the limits on what a header may cost (item 8).

The property: for every generated file, ``_core.read_safetensors_header`` accepts exactly what
``strict_safetensors.read_header`` (Python's json with hooks) accepts, and gives the same
tensors and metadata. Strategies: ``documents()`` draws well-formed headers in any writer's
style (0 to 4 tensors of every dtype, shapes of 0 to 3 dimensions, names with escapes and
non-ASCII, fields and keys in any order, whitespace between tokens, space padding, optional
metadata); ``files()`` applies up to two of the ``QUIRKS`` (serde's leniencies and their
neighbours, one function each) and sometimes a raw byte flip. 3,000 examples of mutated files
and 500 of well-formed ones per run, derandomized (the same examples on every run);
ADAPTER_REGISTRY_STRESS_SCALE=N runs N times as many.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import strict_safetensors as strict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter_registry import AdapterRegistry, InvalidAdapterError, _core
from adapter_registry._lora_files import lora_config
from adapter_registry.binding import MARKER

SCALE = int(os.environ.get("ADAPTER_REGISTRY_STRESS_SCALE", "1"))


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


# A document: tensor entries and metadata as JSON text fragments, so quirks can bend the text.
Entry = list[list[str]]  # [key text, [[field key text, value text], ...]]
Doc = dict[str, Any]


def _pack(header: bytes, data_len: int) -> bytes:
    return struct.pack("<Q", len(header)) + header + bytes(i * 7 % 251 for i in range(data_len))


def _key(name: str, escape: bool) -> str:
    return json.dumps(name, ensure_ascii=escape)


@st.composite
def documents(draw: st.DrawFn) -> Doc:
    names = draw(
        st.lists(
            st.text(st.characters(codec="utf-8", exclude_characters="\0"), min_size=1, max_size=8),
            max_size=4,
            unique=True,
        )
    )
    entries: list[Any] = []
    offset = 0
    for name in names:
        dtype = draw(st.sampled_from(sorted(strict.DTYPE_BITS)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        elements = 1
        for dim in shape:
            elements *= dim
        size = elements * strict.DTYPE_BITS[dtype] // 8
        fields = [
            ['"dtype"', json.dumps(dtype)],
            ['"shape"', "[" + ",".join(map(str, shape)) + "]"],
            ['"data_offsets"', f"[{offset},{offset + size}]"],
        ]
        offset += size
        entries.append([_key(name, draw(st.booleans())), draw(st.permutations(fields))])
    metadata = None
    if draw(st.booleans()):
        pairs = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=6), max_size=3))
        metadata = [[_key(k, True), json.dumps(v)] for k, v in pairs.items()]
    return {
        "entries": entries,
        "metadata": metadata,
        "metadata_at": draw(st.integers(0, len(entries))),
        "ws": draw(st.sampled_from(["", " ", "\n", "\t ", "\r\n"])),
        "pad": draw(st.integers(0, 7)),
        "data_len": offset,
        "prefix": "",
        "suffix": "",
    }


def render(doc: Doc) -> bytes:
    ws = doc["ws"]

    def obj(pairs: list[list[str]]) -> str:
        return "{" + ws + ("," + ws).join(f"{k}{ws}:{ws}{v}" for k, v in pairs) + ws + "}"

    members = [[k, v if isinstance(v, str) else obj(v)] for k, v in doc["entries"]]
    if doc["metadata"] is not None:
        members.insert(doc["metadata_at"], ['"__metadata__"', obj(doc["metadata"])])
    text = doc["prefix"] + obj(members) + doc["suffix"] + " " * doc["pad"]
    return _pack(text.encode("utf-8", "surrogatepass"), doc["data_len"])


def _objects(doc: Doc) -> list[Any]:
    """The tensor entries still written as objects (a quirk may have made one a raw value)."""
    return [e for e in doc["entries"] if isinstance(e[1], list)]


def _field(draw: st.DrawFn, doc: Doc, name: str | None = None) -> list[str] | None:
    """A field of a tensor entry (of the named kind, if given), to bend in place."""
    fields = [f for _, fs in _objects(doc) for f in fs if name is None or f[0] == f'"{name}"']
    return draw(st.sampled_from(fields)) if fields else None


def _bend_integer(bend: Callable[[str], str]) -> Callable[[st.DrawFn, Doc], None]:
    def quirk(draw: st.DrawFn, doc: Doc) -> None:
        field = _field(draw, doc, draw(st.sampled_from(["shape", "data_offsets"])))
        if field is None or field[1] == "[]":
            return
        numbers = field[1][1:-1].split(",")
        i = draw(st.integers(0, len(numbers) - 1))
        numbers[i] = bend(numbers[i])
        field[1] = "[" + ",".join(numbers) + "]"

    return quirk


def _set_value(values: list[str], name: str | None = None) -> Callable[[st.DrawFn, Doc], None]:
    def quirk(draw: st.DrawFn, doc: Doc) -> None:
        field = _field(draw, doc, name)
        if field is not None:
            field[1] = draw(st.sampled_from(values))

    return quirk


def _dtype_as_object(draw: st.DrawFn, doc: Doc) -> None:
    field = _field(draw, doc, "dtype")
    if field is not None:
        field[1] = draw(st.sampled_from(["{%s:null}", "{%s:{}}", "[%s]"])) % field[1]


def _duplicate_tensor(draw: st.DrawFn, doc: Doc) -> None:
    if _objects(doc):
        key, fields = draw(st.sampled_from(_objects(doc)))
        try:
            name = json.loads(key)
        except ValueError:  # a name another quirk made unreadable: its twin is its copy
            name = ""
        twin = draw(st.sampled_from([key, json.dumps(name, ensure_ascii=True) if name else key]))
        if draw(st.booleans()) and name and ord(name[0]) < 0x10000:  # its first char escaped
            twin = f'"\\u{ord(name[0]):04x}' + json.dumps(name[1:])[1:]
        doc["entries"].append([twin, [list(f) for f in fields]])


def _duplicate_field(draw: st.DrawFn, doc: Doc) -> None:
    if _objects(doc):
        _, fields = draw(st.sampled_from(_objects(doc)))
        key, value = draw(st.sampled_from(fields))
        escaped = key[:-2] + f"\\u{ord(key[-2]):04x}" + '"'
        fields.insert(
            draw(st.integers(0, len(fields))), [draw(st.sampled_from([key, escaped])), value]
        )


def _unknown_or_missing_field(draw: st.DrawFn, doc: Doc) -> None:
    if _objects(doc):
        _, fields = draw(st.sampled_from(_objects(doc)))
        if draw(st.booleans()) or not fields:
            fields.append([draw(st.sampled_from(['"extra"', '"Dtype"', '"dtype "'])), "1"])
        else:
            fields.pop(draw(st.integers(0, len(fields) - 1)))


def _metadata(draw: st.DrawFn, doc: Doc) -> None:
    bad = ["1", "null", "{}", "[]", '"\\ud800"', '"\\udc00x"', "true"]
    if doc["metadata"] and draw(st.booleans()):
        draw(st.sampled_from(doc["metadata"]))[1] = draw(st.sampled_from(bad))
    elif doc["metadata"] and draw(st.booleans()):
        doc["metadata"].append(list(doc["metadata"][0]))  # a key twice
    else:  # `__metadata__` written with an escape: the same key, so once is fine, twice not
        key = draw(st.sampled_from(['"__metadata__"', '"__metadata\\u005f_"']))
        value = draw(st.sampled_from(['{"k":"v"}', "null", '"pt"', "[]"]))
        doc["entries"].insert(0, [key, value])


def _entry_not_object(draw: st.DrawFn, doc: Doc) -> None:
    if _objects(doc):
        entry = draw(st.sampled_from(_objects(doc)))
        values = "[" + ",".join(v for _, v in entry[1]) + "]"  # the struct-as-array quirk
        entry[1] = draw(st.sampled_from([values, "null", "1", '"F32"', "[]"]))


def _bad_name(draw: st.DrawFn, doc: Doc) -> None:
    if doc["entries"]:
        entry = draw(st.sampled_from(doc["entries"]))
        entry[0] = draw(
            st.sampled_from(
                ['"\\ud800"', '"a\\udfff"', '""', '"a\\u0000"', '"\\ud83d\\ude00"', '"a\\q"',
                 '"a\tb"', '"\\u00e9"']
            )
        )  # fmt: skip


def _framing(draw: st.DrawFn, doc: Doc) -> None:
    doc[draw(st.sampled_from(["prefix", "suffix"]))] = draw(
        st.sampled_from(["\ufeff", " ", "\n", "\t", "\0", "x", "{}", ",", "}"])
    )


def _trailing_comma(draw: st.DrawFn, doc: Doc) -> None:
    field = _field(draw, doc)
    if field is not None:
        field[1] = field[1][:-1] + ",]" if field[1].startswith("[") else field[1]


def _deep(draw: st.DrawFn, doc: Doc) -> None:
    field = _field(draw, doc, "shape")
    if field is not None:
        depth = draw(st.sampled_from([2, 50, 5000]))
        field[1] = "[" * depth + "1" + "]" * depth


QUIRKS: list[Callable[[st.DrawFn, Doc], None]] = [
    _dtype_as_object,
    _bend_integer(lambda n: n + ".0"),
    _bend_integer(lambda n: n + "e0"),
    _bend_integer(lambda n: "1E3"),
    _bend_integer(lambda n: "-" + n),
    _bend_integer(lambda n: "0" + n),
    _bend_integer(lambda n: str(2**64)),
    _bend_integer(lambda n: "1" + "0" * 30),
    _bend_integer(lambda n: str(2**64 - 1)),
    _bend_integer(lambda n: "NaN"),
    _bend_integer(lambda n: "Infinity"),
    _bend_integer(lambda n: f'"{n}"'),
    _bend_integer(lambda n: "true"),
    _set_value(["null", "{}", '"F32"', "[]", "[0]", "[0,0,0]", "[0, 0]", "0"]),
    _set_value(['"F32"', '"f32"', '"F32 "', '"\\u0046\\u0033\\u0032"', "null"], "dtype"),
    _duplicate_tensor,
    _duplicate_field,
    _unknown_or_missing_field,
    _metadata,
    _entry_not_object,
    _bad_name,
    _framing,
    _trailing_comma,
    _deep,
]


@st.composite
def files(draw: st.DrawFn) -> bytes:
    doc = draw(documents())
    for quirk in draw(st.lists(st.sampled_from(QUIRKS), min_size=1, max_size=2)):
        quirk(draw, doc)
    data = bytearray(render(doc))
    if draw(st.integers(0, 9)) == 0:  # a raw byte, anywhere: the length, the JSON, the data
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.integers(0, 9)) == 0:
        data += b"\0" if draw(st.booleans()) else b""
        del data[len(data) - draw(st.integers(0, min(2, len(data)))) :]
    return bytes(data)


def verdicts(data: bytes) -> tuple[Any, Any]:
    """(the core's, the oracle's): (tensors, metadata), or None for a refusal."""
    try:
        expected: Any = strict.read_header(data)
    except strict.Refused:
        expected = None
    try:
        ours: Any = _core.read_safetensors_header(data)
    except InvalidAdapterError:
        ours = None
    return ours, expected


@_settings(3000)
@given(files())
def test_the_core_accepts_exactly_what_the_strict_reader_accepts(data: bytes) -> None:
    ours, expected = verdicts(data)
    assert ours == expected


@_settings(500)
@given(documents())
def test_well_formed_headers_in_any_style_are_accepted_alike(doc: Doc) -> None:
    data = render(doc)
    ours, expected = verdicts(data)
    assert ours == expected
    dtypes = [json.loads(v) for _, fs in doc["entries"] for k, v in fs if k == '"dtype"']
    if all(strict.DTYPE_BITS[d] % 8 == 0 for d in dtypes):  # F4, F6 may not fill whole bytes
        assert ours is not None, data


def test_the_oracle_refuses_each_serde_leniency() -> None:
    """Each of these passed serde (the core's earlier parser, the reference reader) or Python's
    plain json.loads; both readers refuse each."""
    entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    cases = {
        "dtype as an object": '{"t":{"dtype":{"F32":null},"shape":[1],"data_offsets":[0,4]}}',
        "float shape": '{"t":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}',
        "exponent offset": '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}',
        "negative zero": '{"t":{"dtype":"F32","shape":[1],"data_offsets":[-0,4]}}',
        "beyond u64": '{"t":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}',
        "escaped twin key": f'{{"t":{entry},"\\u0074":{entry}}}',
        "metadata null": '{"__metadata__":null}',
        "metadata number value": '{"__metadata__":{"k":1}}',
        "lone surrogate name": f'{{"\\ud800":{entry}}}',
        "NaN": '{"t":{"dtype":"F32","shape":[NaN],"data_offsets":[0,4]}}',
    }
    for what, header in cases.items():
        data = _pack(header.encode() + b" " * (-len(header) % 8), 4)
        assert verdicts(data) == (None, None), what
    good = _pack(b'{"t":%s}' % entry.encode(), 4)
    assert verdicts(good)[0] == verdicts(good)[1] == ([("t", "F32", [1])], [])


# -- item 8: the tensor count limit ------------------------------------------------------------


def _zero_size_lora(tensors: int) -> bytes:
    """`tensors` LoRA tensors (A/B pairs, rank 4, zero-size) and no data: a header at any count."""
    parts = []
    for i in range(tensors):
        side, module = "AB"[i % 2], i // 2
        shape = "[4,0]" if side == "A" else "[0,4]"
        parts.append(
            f'"base_model.model.m{module}.lora_{side}.weight":'
            f'{{"dtype":"F32","shape":{shape},"data_offsets":[0,0]}}'
        )
    return _pack(("{" + ",".join(parts) + "}").encode(), 0)


def test_a_header_holds_up_to_the_tensor_limit_and_not_one_more(tmp_path: Path) -> None:
    at_limit = _zero_size_lora(strict.MAX_TENSORS)
    tensors, _ = _core.read_safetensors_header(at_limit)
    assert len(tensors) == strict.MAX_TENSORS
    over = _zero_size_lora(strict.MAX_TENSORS + 1)
    with pytest.raises(InvalidAdapterError, match="more than 100000 tensors"):
        _core.read_safetensors_header(over)
    root = tmp_path / "adapters"
    registry = AdapterRegistry(root=str(root), db_url=f"sqlite:///{tmp_path}/r.db")
    config = {**lora_config(r=4), "target_modules": None}
    record = registry.store(at_limit, config=config, task_type="t", source="manual", session_id="s")
    assert registry.verify(record.id).status == "ok"
    with pytest.raises(InvalidAdapterError, match="the limit is 100000"):
        registry.store(over, config=config, task_type="t", source="manual", session_id="s")
    assert len(registry.list_all()) == 1
    assert sorted(p.name for p in root.iterdir() if p.name not in (".staging", MARKER)) == [
        record.id
    ]
    assert not any((root / ".staging").iterdir())


def test_the_84_mb_header_of_1_5_million_tensors_is_refused_at_the_limit() -> None:
    """The header that cost 780 MB to parse: refused once it passes 100,000 tensors."""
    entry = '"layer.%07d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    header = ("{" + ",".join(entry % i for i in range(1_500_000)) + "}").encode()
    assert len(header) > 84_000_000
    with pytest.raises(InvalidAdapterError, match="the limit is 100000"):
        _core.read_safetensors_header(_pack(header, 0))


# -- item 8: refused on the header, before the copy -------------------------------------------

_REFUSE_BEFORE_COPY = textwrap.dedent(
    """
    import json, sys
    from adapter_registry import AdapterRegistry, InvalidAdapterError
    home, weights, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    registry = AdapterRegistry(root=home + "/adapters", db_url=f"sqlite:///{home}/r.db")
    try:
        registry.store(weights, config=config, task_type="t", source="manual", session_id="s")
    except InvalidAdapterError as err:
        print("refused:", err)
    """
)


def _sparse_weights(path: Path, header: dict[str, Any]) -> Path:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    data_len = max(end for _, end in (t["data_offsets"] for t in header.values()))
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + data_len)  # a hole: 64 MiB that read as zeros
    return path


@pytest.mark.parametrize("kind", ["no LoRA tensor", "rank disagrees"])
def test_weights_the_config_cannot_describe_are_refused_before_the_copy(
    tmp_path: Path, kind: str
) -> None:
    """A 64 MiB weights file whose header shows no LoRA tensor, or a rank other than the
    config's, is refused with nothing written and no byte of its data copied. Proof without
    timing: the store runs in a child with ADAPTER_REGISTRY_CRASH_AT=copying, the crash point
    the core passes after copying each chunk of tensor data, so a store that reached the copy
    is killed by SIGKILL; this one returns InvalidAdapterError and exits 0."""
    mib64 = 64 << 20
    if kind == "no LoRA tensor":
        header = {
            "embed.weight": {"dtype": "F32", "shape": [mib64 // 4], "data_offsets": [0, mib64]}
        }
    else:
        half = mib64 // 2
        header = {
            "base_model.model.q_proj.lora_A.weight": {
                "dtype": "F32", "shape": [8, half // 32], "data_offsets": [0, half]},
            "base_model.model.q_proj.lora_B.weight": {
                "dtype": "F32", "shape": [half // 32, 8], "data_offsets": [half, mib64]},
        }  # fmt: skip
    weights = _sparse_weights(tmp_path / "w.safetensors", header)
    assert weights.stat().st_size > mib64
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, _core.CRASH_AT_ENV: "copying"}
    config = json.dumps({**lora_config(r=4), "target_modules": None})
    child = subprocess.run(
        [sys.executable, "-c", _REFUSE_BEFORE_COPY, str(home), str(weights), config],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert child.returncode == 0, (child.returncode, child.stderr)
    expected = "no LoRA tensors" if kind == "no LoRA tensor" else "do not have the config's rank 4"
    assert child.stdout.startswith("refused:") and expected in child.stdout, child.stdout
    root = home / "adapters"
    # no adapter, no staging directory (the registry's marker, from its first open, only)
    assert [p.name for p in root.iterdir() if p.name != MARKER] == []
    registry = AdapterRegistry(root=str(root), db_url=f"sqlite:///{home}/r.db")
    assert registry.list_all() == []


def test_the_crash_point_kills_a_store_that_reaches_the_copy(tmp_path: Path) -> None:
    """The proof above can fail: the same child, given weights that match, dies in the copy."""
    half = 32 << 20
    header = {
        "base_model.model.q_proj.lora_A.weight": {
            "dtype": "F32", "shape": [4, half // 16], "data_offsets": [0, half]},
        "base_model.model.q_proj.lora_B.weight": {
            "dtype": "F32", "shape": [half // 16, 4], "data_offsets": [half, 2 * half]},
    }  # fmt: skip
    weights = _sparse_weights(tmp_path / "w.safetensors", header)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, _core.CRASH_AT_ENV: "copying"}
    config = json.dumps({**lora_config(r=4), "target_modules": None})
    child = subprocess.run(
        [sys.executable, "-c", _REFUSE_BEFORE_COPY, str(home), str(weights), config],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert child.returncode == -9, (child.returncode, child.stdout, child.stderr)


def test_opened_weights_are_staged_once_and_close_writes_nothing(tmp_path: Path) -> None:
    source = _sparse_weights(
        tmp_path / "w.safetensors",
        {"w": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}},
    )
    opened = _core.open_weights(str(source))
    assert opened.tensors == [("w", "U8", [16])] and opened.size == source.stat().st_size
    opened.close()
    with pytest.raises(RuntimeError, match="already staged or closed"):
        opened.stage(str(tmp_path), "x", b"{}")
    assert not (tmp_path / ".staging").exists()
    opened = _core.open_weights(source.read_bytes())
    staged = opened.stage(str(tmp_path), "x", b"{}")
    assert staged.file_size == source.stat().st_size
    assert staged.file_hash == _core.hash_file(str(source))[0]
    staged.discard()
