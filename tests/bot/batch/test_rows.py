"""CSV batch validation: every problem at once, with its spreadsheet row number."""

from __future__ import annotations

import pytest

from bot.batch.rows import BatchFileError, read_batch_csv
from engine.catalog import Catalog
from engine.settings import REPO_ROOT

CATALOG = Catalog.load(REPO_ROOT / "templates")
PRODUCT = CATALOG.template("product-photo")


def read(text: str | bytes, *, max_rows: int = 100, template: str = "product-photo"):
    data = text.encode() if isinstance(text, str) else text
    return read_batch_csv(
        data, template=CATALOG.template(template), catalog=CATALOG, max_rows=max_rows
    )


def test_the_lessons_csv_reads_with_flags() -> None:
    rows = read(
        "product,style,lighting,seed,lora,negative\n"
        "Red Widget,minimalist,studio,7,tiny-style:0.5,\n"
        "Blue Widget,industrial,natural,,,shadows\n"
        ",,,,,\n"
    )
    assert [r.number for r in rows] == [2, 3]
    assert rows[0].variables == {
        "product": "Red Widget",
        "style": "minimalist",
        "lighting": "studio",
    }
    assert rows[0].seed == 7 and rows[0].loras == (("tiny-style", 0.5),)
    assert rows[1].seed is None and rows[1].negative == "shadows"


def test_five_faults_are_all_reported_with_row_numbers() -> None:
    text = (
        "product,style,colour,seed,model,lora\n"  # colour: unknown column (row 1)
        "Red Widget,minimalist,red,abc,,\n"  # bad seed (row 2)
        ",luxury,blue,,,\n"  # missing required product (row 3)
        "Green Widget,modern,green,,sdx1,\n"  # unknown model (row 4)
        "Mug,modern,white,,,nope:0.5\n"  # unknown LoRA (row 5)
    )
    with pytest.raises(BatchFileError) as info:
        read(text)
    problems = info.value.problems
    assert len(problems) == 5, problems
    assert problems[0].startswith("row 1: unknown column `colour`")
    assert problems[1] == "row 2: seed `abc` is not a whole number from 0 to 4294967295"
    assert problems[2] == "row 3: `product` is empty; template `product-photo` needs it"
    assert problems[3] == "row 4: unknown model `sdx1`; did you mean `sdxl`?"
    assert problems[4].startswith("row 5: unknown LoRA `nope`")
    assert info.value.message.startswith("the batch file has 5 problems; nothing was queued.")


def test_lora_weights_in_cells_are_checked_as_on_the_command_line() -> None:
    text = "product,lora\nA,tiny-style:nan\nB,tiny-style:1e9\nC,tiny-style:9\nD,tiny-style\n"
    with pytest.raises(BatchFileError) as info:
        read(text)
    problems = info.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("row 2: `tiny-style:nan`: the weight must be a number")
    assert problems[1].startswith("row 3: `tiny-style:1e9`: the weight must be a number")
    assert problems[2].startswith("row 4: `tiny-style:9`: LoRA weights go from -5 to 5")


def test_too_many_rows_and_not_utf8_and_empty() -> None:
    with pytest.raises(BatchFileError, match="the file has 3 rows; the limit is 2 per batch"):
        read("product\na\nb\nc\n", max_rows=2)
    with pytest.raises(BatchFileError, match="not UTF-8 text"):
        read("product\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(BatchFileError, match="the file is empty"):
        read("")
    with pytest.raises(BatchFileError, match="a header but no rows"):
        read("product\n")
    with pytest.raises(BatchFileError, match="not UTF-8 text"):
        read(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(BatchFileError, match="the file is binary, not a CSV"):
        read(b"product\nmug\x00\x01\n")


def test_excel_bom_and_ragged_rows() -> None:
    rows = read("\ufeffproduct,style\nMug,luxury\n")
    assert rows[0].variables["product"] == "Mug"
    with pytest.raises(BatchFileError, match="row 2: more cells than columns"):
        read("product\nMug,extra\n")


def test_the_lessons_own_header_fills_the_variable_it_names() -> None:
    # The lesson's file as it stands: `product_name` is an alias of product-photo's `product`.
    rows = read("product_name,style,lighting\nRed Widget,minimalist,studio\n")
    assert rows[0].variables == {
        "product": "Red Widget",
        "style": "minimalist",
        "lighting": "studio",
    }


def test_a_variable_given_by_name_and_alias_is_refused() -> None:
    with pytest.raises(BatchFileError) as caught:
        read("product,product_name\nRed Widget,Blue Widget\n")
    assert caught.value.problems == [
        "row 1: columns `product` and `product_name` both fill `product`; keep one"
    ]


def test_a_cell_over_the_csv_readers_limit_is_a_listed_problem() -> None:
    with pytest.raises(BatchFileError) as caught:
        read(f"product,style\n,luxury\nWidget,{'x' * 200_000}\n")
    assert caught.value.problems == [
        "row 2: `product` is empty; template `product-photo` needs it",
        "row 3: a cell is longer than 131,072 characters; a cell holds a few words "
        "(check for an unclosed quote)",
    ]
