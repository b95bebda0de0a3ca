from zerosearch_simulator.parsing import make_title, split_snippets, to_documents

PAPER_STYLE = ("Doc 1: Paris is the capital and most populous city of France, on the Seine. "
               "Doc 2: The Eiffel Tower was built for the 1889 World's Fair in Paris. "
               "Doc 3: France's government sits in Paris, home to the Élysée Palace. "
               "Doc 4: Paris hosted the Summer Olympics in 1900, 1924 and 2024. "
               "Doc 5: The Louvre in Paris is the world's most-visited museum. "
               "Doc 6: this one is beyond k")


def test_paper_format_cut_at_k():
    snippets = split_snippets(PAPER_STYLE, 5)
    assert len(snippets) == 5
    assert snippets[0].startswith("Paris is the capital")
    assert all("Doc" not in s for s in snippets)
    assert split_snippets(PAPER_STYLE, 2)[1].startswith("The Eiffel Tower")


def test_markdown_and_newline_variants():
    text = ("**Doc 1:** Alpha beta gamma delta epsilon.\n\n## Document 2. Zeta eta theta iota kappa.\n"
            "Doc 3) One two three four five")
    assert split_snippets(text, 3) == ["Alpha beta gamma delta epsilon.", "Zeta eta theta iota kappa.",
                                       "One two three four five"]


def test_no_markers_falls_back_to_lines_then_sentences():
    lines = "First result has some words here.\nSecond result has other words too.\n"
    assert split_snippets(lines, 2) == ["First result has some words here.", "Second result has other words too."]
    prose = "One sentence has several words. Another sentence has more words here. A third one also counts now."
    assert len(split_snippets(prose, 3)) == 3


def test_garbage_yields_fewer_documents_not_an_error():
    assert split_snippets("", 5) == []
    assert split_snippets("Doc 1: ok\nDoc 2: \nDoc 3: !!!", 5) == []
    assert len(split_snippets("Doc 1: a real document with words\nDoc 2: a real document with words", 5)) == 1


def test_documents_are_deterministic_and_fake_urls():
    a = to_documents(["Paris is the capital of France."], query="capital of france", label="useful")
    b = to_documents(["Paris is the capital of France."], query="capital of france", label="useful")
    assert a == b
    assert a[0].url.startswith("https://paris-is.example/")
    assert a[0].label == "useful" and a[0].id.startswith("zs-")
    title = make_title("one two three four five six seven eight nine ten")
    assert title == "one two three four five six seven eight ..."
