from transformers import AutoTokenizer

from harness.cell.prompts import prompt, tokenize_example


def _trained_text(row, tokenizer_dir):
    """What training trains on (tokenize_example), decoded: the text between BOS and the one trailing EOS."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tokenize_example(row, tok)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    return tok.decode(ids[1:-1])


def test_template_without_input_renders_exactly_and_ends_with_eos(tokenizer_dir):
    row = {"instruction": "Name a color.", "input": "", "output": "Blue."}
    assert _trained_text(row, tokenizer_dir) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nName a color.\n\n### Response:\nBlue."
    )


def test_template_with_input_shows_the_input_once_and_ends_with_eos(tokenizer_dir):
    row = {"instruction": "Translate to French.", "input": "I like cheese.", "output": "J'aime le fromage."}
    text = _trained_text(row, tokenizer_dir)
    assert text == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request."
        "\n\n### Instruction:\nTranslate to French.\n\n### Input:\nI like cheese.\n\n### Response:\n"
        "J'aime le fromage."
    )
    assert text.count("### Instruction:") == 1  # the paper's template repeated the instruction


def test_blank_input_uses_the_no_input_template():
    assert prompt("Do it.", "   ") == prompt("Do it.")
    assert "### Input:" not in prompt("Do it.", None)


def test_tokenized_example_has_special_tokens_and_exactly_one_trailing_eos(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tokenize_example({"instruction": "Add.", "input": "1 and 2", "output": "3"}, tok)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    assert tok.decode(ids, skip_special_tokens=True).endswith("### Response:\n3")
