"""Schema folders: what loads, and what stops start-up with file, entity and field named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from batchline.entities.schema import FieldType, SchemaError, load_registry
from batchline.entities.values import ConversionError, LogicalKeyMismatch, Values

ROOT = Path(__file__).resolve().parents[2]

CATEGORY = """
type: ENTITY
entity:
  name: CATEGORY
  lk: [id]
  fields:
    - name: id
      type: STRING
      required: true
"""


def _folder(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def _entity(name: str, fields: str, lk: str = "[id]", extra: str = "") -> str:
    return f"""
type: ENTITY
entity:
  name: {name}
  lk: {lk}{extra}
  fields:
    - name: id
      type: STRING
{fields}"""


def test_the_example_folder_loads_with_several_documents_per_file() -> None:
    registry = load_registry(ROOT / "entities")

    assert [e.name for e in registry] == ["CATEGORY", "PRODUCT", "PRICE"]
    product = registry.require("product")
    assert {f.type for f in product.fields} == set(FieldType)
    price = registry.require("Price")
    assert (price.lk, price.lk_separator, price.table) == (
        ("product", "currency"),
        ",",
        "entity_price",
    )
    assert all(f.required for f in price.lk_fields)


@pytest.mark.parametrize(
    ("fields", "lk", "message"),
    [
        (
            "    - name: price\n      type: MONEY\n",
            "[id]",
            "entity PRODUCT, field price: unknown type 'MONEY'",
        ),
        ("", "[id, code]", "entity PRODUCT, field code: lk names a field that does not exist"),
        (
            '    - name: "drop table x;--"\n      type: STRING\n',
            "[id]",
            "entity PRODUCT, field drop table x;--: unsafe field name",
        ),
        (
            "    - name: limit\n      type: INTEGER\n",
            "[id]",
            "entity PRODUCT, field limit: reserved name",
        ),
        (
            "    - name: status\n      type: ENUM\n      enum: [A, B]\n",
            "[id]",
            "entity PRODUCT, field status: unknown key 'enum'",
        ),
        (
            "    - name: status\n      type: ENUM\n",
            "[id]",
            "entity PRODUCT, field status: type ENUM needs 'enums'",
        ),
        (
            "    - name: owner\n      type: ENTITY_REF\n      entityRef:\n        entity: USER\n",
            "[id]",
            "entity PRODUCT, field owner: entityRef names entity 'USER', which is not declared",
        ),
        (
            "    - name: tags\n      type: ARRAY\n      array:\n        type: ENTITY_REF\n",
            "[id]",
            "entity PRODUCT, field tags[]: arrays of ENTITY_REF are not supported",
        ),
        (
            "    - name: data\n      type: OBJECT\n",
            "[id]",
            "entity PRODUCT, field data: type OBJECT needs 'object'",
        ),
    ],
)
def test_a_bad_schema_names_file_entity_and_field(
    tmp_path: Path, fields: str, lk: str, message: str
) -> None:
    folder = _folder(tmp_path, **{"a.yaml": CATEGORY, "b.yaml": _entity("PRODUCT", fields, lk)})

    with pytest.raises(SchemaError) as raised:
        load_registry(folder)

    assert str(raised.value).startswith(f"{folder / 'b.yaml'}, {message}")


def test_unsafe_entity_names_and_duplicates_across_files_are_refused(tmp_path: Path) -> None:
    folder = _folder(
        tmp_path, **{"a.yaml": CATEGORY, "b.yaml": CATEGORY.replace("CATEGORY", "Category")}
    )
    with pytest.raises(SchemaError, match=r"b\.yaml, entity Category: duplicate entity: already"):
        load_registry(folder)

    (folder / "b.yaml").write_text(_entity("bad-name", ""))
    with pytest.raises(SchemaError, match="entity bad-name: unsafe entity name"):
        load_registry(folder)


def test_logical_keys_parse_from_url_segments(tmp_path: Path) -> None:
    registry = load_registry(ROOT / "entities")
    values = Values(registry)
    price = registry.require("price")

    assert values.parse_lk(price, "a%2Cb,EUR") == {"product": "a,b", "currency": "EUR"}
    assert values.lk_id(price, ("a,b", "EUR")) == "a%2Cb,EUR"
    with pytest.raises(LogicalKeyMismatch):
        values.parse_lk(price, "a,b,EUR")
    with pytest.raises(ConversionError, match="Unable to convert field currency - ENUM - for"):
        values.parse_lk(price, "a,YEN")


@pytest.mark.parametrize("command", ["migrate", "worker"])
def test_a_bad_schema_stops_start_up_with_its_message(tmp_path: Path, command: str) -> None:
    folder = _folder(
        tmp_path, **{"a.yaml": _entity("PRODUCT", "    - name: price\n      type: MONEY\n")}
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHLINE_")}
    env["BATCHLINE_ENTITIES_DIR"] = str(folder)
    env["BATCHLINE_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    env["BATCHLINE_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"

    result = subprocess.run(
        [sys.executable, "-m", "batchline.cli", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert (
        f"{folder / 'a.yaml'}, entity PRODUCT, field price: unknown type 'MONEY'" in result.stderr
    )
