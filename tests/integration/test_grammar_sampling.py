"""Sampling with the grammar checked on the chosen token first (``grammar_sampling``) gives
the reply the grammar in the sampler chain gives, greedy, on the real smollm2; sampled, the
reply still follows the schema (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import TEST_MODELS_DIR

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf
from assistant.models import cpu
from assistant.models.grammar_sampling import GrammarFirstLlama

cpu.load()
schema = json.loads(sys.argv[2])
llm = GrammarFirstLlama(model_path=sys.argv[1], n_ctx=1024, n_threads=2, verbose=False)
prompt = llm.tokenize(("<|im_start|>user\nDescribe a fictional person as JSON: name, age, "
                       "three hobbies.<|im_end|>\n<|im_start|>assistant\n").encode(),
                      special=True)

def reply(temp=0.0):
    llm.n_tokens = 0  # read the whole prompt each time: a reused prefix could shift the logits
    grammar = LlamaGrammar.from_string(json_schema_to_gbnf(json.dumps(schema)), verbose=False)
    out = []
    for token in llm.generate(prompt, temp=temp, grammar=grammar, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) >= 300:
            break
        out.append(token)
    return llm.detokenize(out).decode()

llm.grammar_first = False
chained = reply()
llm.grammar_first = True
first = reply()
rejected = llm._sampler.rejected
llm.set_seed(7)
sampled = reply(1.0)
print(json.dumps({"chained": chained, "first": first, "sampled": sampled,
                  "kind": type(llm._sampler).__name__, "rejected": rejected}))
"""

SCHEMA = {"type": "object", "required": ["name", "age", "hobbies"], "properties": {
    "name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
    "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20},
                "minItems": 3, "maxItems": 3}}}


def test_grammar_first_sampling_gives_the_chained_grammar_s_greedy_reply() -> None:
    model = TEST_MODELS_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model), json.dumps(SCHEMA)], cwd=REPO,
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kind"] == "GrammarFirst"
    assert result["first"] == result["chained"]
    for reply in (result["first"], result["sampled"]):  # greedy, and sampled at T = 1
        person = json.loads(reply)
        assert set(person) == {"name", "age", "hobbies"} and isinstance(person["age"], int)
        assert len(person["hobbies"]) == 3 and all(isinstance(h, str) for h in person["hobbies"])
    assert result["rejected"] > 0  # the model's own choice broke the grammar, and was redone
