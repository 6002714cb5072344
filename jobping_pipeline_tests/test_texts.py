from jobping_pipeline.texts import build_text, format_value, text_hash, unique_in_order


def test_text_keeps_column_order_and_drops_blanks():
    text = build_text(["Data Engineer", "Acme", None, ["Data", "", "IT"], "  Build pipelines.  "])
    assert text == "Data Engineer\nAcme\nData, IT\nBuild pipelines."


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
