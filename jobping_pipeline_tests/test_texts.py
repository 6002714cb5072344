import pytest

from jobping_pipeline.models import ModelSpec
from jobping_pipeline.models.openai_api import ApiSpec
from jobping_pipeline.texts import TEXT_TEMPLATES, build_text, format_value, text_hash, unique_in_order

JOB = ["Data Engineer", "Acme", None, ["Data", "", "IT"], "Build pipelines. Ship them!"]
COLUMNS = ("title", "company", "location", "categories", "description")


def test_text_keeps_column_order_and_drops_blanks():
    text = build_text(["Data Engineer", "Acme", None, ["Data", "", "IT"], "  Build pipelines.  "])
    assert text == "Data Engineer\nAcme\nData, IT\nBuild pipelines."


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("lines", "Data Engineer\nAcme\nData, IT\nBuild pipelines. Ship them!"),
        ("sentences", "Data Engineer. Acme. Data, IT. Build pipelines. Ship them!"),
        ("labelled", "title: Data Engineer\ncompany: Acme\ncategories: Data, IT\ndescription: Build pipelines. Ship them!"),
        ("pipes", "Data Engineer | Acme | Data, IT | Build pipelines. Ship them!"),
    ],
)
def test_each_template_joins_the_non_empty_values(template, expected):
    assert build_text(JOB, template, COLUMNS) == expected


def test_an_unknown_template_is_refused():
    with pytest.raises(ValueError, match="unknown text template 'markdown'"):
        build_text(JOB, "markdown", COLUMNS)


def test_a_template_other_than_lines_is_part_of_the_model_id():
    assert ModelSpec().model_id == "sentence-transformers/all-MiniLM-L6-v2"
    ids = {ModelSpec(text_template=template).model_id for template in TEXT_TEMPLATES}
    assert len(ids) == len(TEXT_TEMPLATES)
    assert ModelSpec(text_template="sentences").model_id == "sentence-transformers/all-MiniLM-L6-v2+text=sentences"
    assert ApiSpec(model="text-embedding-3-small", text_template="pipes").model_id == "openai:text-embedding-3-small+text=pipes"


def test_format_value_of_non_text_columns():
    assert format_value(None) == ""
    assert format_value(42) == "42"
    assert format_value([]) == ""


def test_hash_tells_texts_apart_and_is_stable():
    assert text_hash("a") == text_hash("a")
    assert text_hash("a") != text_hash("b")
    assert len(text_hash("")) == 16
    assert text_hash("\ud800 lone surrogate") != text_hash(" lone surrogate")


def test_unique_in_order():
    assert unique_in_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
