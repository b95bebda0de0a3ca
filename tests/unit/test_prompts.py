from zerosearch_simulator.prompts import build_messages, load_template

# The prompt the released Simulation_LLM_* models were fine-tuned on, byte for byte.
PAPER_SFT = (
    "You are the Google search engine.\n"
    "Given a query, you need to generate five useful documents for the query.\n\n"
    'The user is trying to answer the question: "who wrote hamlet?" whose answer is William Shakespeare.\n'
    "Each document should contain about 30 words, and these documents should contain useful information.\n\n"
    "Query: hamlet author\n"
    "Useful Output:"
)


def test_sft_prompt_is_the_papers_byte_for_byte():
    messages = build_messages("sft", label="useful", query="hamlet author", question="who wrote hamlet?",
                              answers=["William Shakespeare", "Shakespeare"], k=5)
    assert messages[0] == {"role": "system", "content": ""}
    assert messages[1]["content"] == PAPER_SFT


def test_sft_noisy_and_no_answer():
    content = build_messages("sft", label="noisy", query="q", question=None, answers=None, k=3)[1]["content"]
    assert "generate five noisy documents" in content and content.endswith("Noisy Output:")
    assert 'question: "q".' in content and "whose answer" not in content


def test_more_than_five_documents_asked_for_by_number():
    content = build_messages("sft", label="useful", query="q", question="q", answers=["a"], k=8)[1]["content"]
    assert "generate eight useful documents" in content


def test_prompt_mode_and_versions():
    content = build_messages("prompt", label="useful", query="q", question="qq", answers=["a"], k=5)[1]["content"]
    assert content.endswith("Useful Output:") and "Example" in content and "Query: q" in content
    assert load_template("sft").version != load_template("prompt").version
    assert len(load_template("sft").version) == 12
