#!/usr/bin/env python3
"""Reference chat-template renders, made with Python Jinja2 exactly as Hugging Face
transformers renders chat templates, for tern's template tests.

transformers (`utils/chat_template_utils.py`, `_compile_jinja_template` and
`render_jinja_template`) compiles the template in an `ImmutableSandboxedEnvironment` with
`trim_blocks=True, lstrip_blocks=True` and the `loopcontrols` extension, replaces the
`tojson` filter by plain `json.dumps` (key order kept, `ensure_ascii=False`), adds the
globals `raise_exception` and `strftime_now`, and renders with `messages`, `tools`,
`documents`, `add_generation_prompt`, the tokenizer's special tokens and any extra
keyword arguments. This script does the same (transformers itself is not needed).

Templates: SmolLM2-135M-Instruct's (read from its GGUF), and from llama.cpp's
`models/templates/`: Qwen3, Qwen2.5, Phi-3.5-mini, Llama 3.1 / 3.2 / 3.3, Gemma 2 (the
Gemma chat format) and Gemma 4. Each gets several conversations (with and without system prompt,
multi-turn, assistant last, unicode and whitespace), with and without the generation
prompt, plus template-specific variables (Qwen3 `enable_thinking`, tools; Llama 3.x a
fixed `date_string` so renders do not depend on today's date). A render that raises is
recorded with its message.

Writes tests/goldens/templates/<name>.json.

Usage: .cache/venv/bin/python scripts/tokenizer/make_template_goldens.py
"""
from __future__ import annotations

import copy
import json
import pathlib
import sys
from datetime import datetime

import gguf
import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / ".cache"
TEMPLATES = DATA / "llama.cpp" / "models" / "templates"
OUT = ROOT / "tests" / "goldens" / "templates"


def compile_like_transformers(source: str) -> jinja2.Template:
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def render(source: str, bos: str, eos: str, messages, add_generation_prompt: bool, extra: dict) -> dict:
    template = compile_like_transformers(source)
    kwargs = {"bos_token": bos, "eos_token": eos, **extra}
    tools = kwargs.pop("tools", None)
    documents = kwargs.pop("documents", None)
    try:
        text = template.render(messages=messages, tools=tools, documents=documents,
                               add_generation_prompt=add_generation_prompt, **kwargs)
        return {"expected": text}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def msg(role: str, content: str, **extra) -> dict:
    return {"role": role, "content": content, **extra}


SYSTEM = msg("system", "You are a concise assistant. Answer in one sentence.")
CONVERSATIONS = {
    "single_user": [msg("user", "What is the capital of France?")],
    "system_user": [SYSTEM, msg("user", "What is 2 + 2?")],
    "multi_turn": [
        msg("user", "Hi there!"),
        msg("assistant", "Hello! How can I help you today?"),
        msg("user", "Tell me a joke about penguins."),
    ],
    "system_multi_turn": [
        SYSTEM,
        msg("user", "Name a prime number."),
        msg("assistant", "7"),
        msg("user", "Another one?"),
        msg("assistant", "11"),
        msg("user", "And one more, please."),
    ],
    "assistant_last": [
        msg("user", "Say hello."),
        msg("assistant", "Hello!"),
    ],
    "unicode_and_whitespace": [
        msg("user", "  Héllo 🦙 世界\n\nline two\twith tab  "),
        msg("assistant", "\nAnswer with <b>html</b> & \"quotes\" and 'apostrophes'.\n"),
        msg("user", "{{ not a template }} {% neither %}"),
    ],
}

QWEN3_THINKING = [
    msg("user", "What is 6 times 7?"),
    msg("assistant", "<think>\nSix sevens are forty-two.\n</think>\n\n42"),
    msg("user", "And 6 times 8?"),
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
QWEN3_TOOLS = [
    SYSTEM,
    msg("user", "Weather in Paris?"),
    msg("assistant", "", tool_calls=[{"type": "function", "function": {
        "name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]),
    msg("tool", '{"temperature": 18, "sky": "clear"}'),
]


def template_specs():
    reader = gguf.GGUFReader(DATA / "models" / "smollm2-135m-instruct-q4_1.gguf")
    field = reader.fields["tokenizer.chat_template"]
    smollm2 = bytes(field.parts[field.data[0]]).decode("utf-8")

    def file(name):
        return (TEMPLATES / name).read_text(encoding="utf-8")

    base = list(CONVERSATIONS.items())
    qwen3_extra = [{}, {"enable_thinking": False}, {"enable_thinking": True}]
    llama_extra = [{"date_string": "26 Jul 2024"}]
    return [
        ("smollm2", "SmolLM2-135M-Instruct GGUF tokenizer.chat_template", smollm2,
         "<|im_start|>", "<|im_end|>", base, [{}]),
        ("qwen3", "Qwen-Qwen3-0.6B.jinja", file("Qwen-Qwen3-0.6B.jinja"), "", "<|im_end|>",
         base + [("thinking", QWEN3_THINKING), ("tools", QWEN3_TOOLS)], qwen3_extra),
        ("qwen2.5", "Qwen-Qwen2.5-7B-Instruct.jinja", file("Qwen-Qwen2.5-7B-Instruct.jinja"), "",
         "<|im_end|>", base + [("tools", QWEN3_TOOLS)], [{}]),
        ("phi-3.5-mini", "microsoft-Phi-3.5-mini-instruct.jinja",
         file("microsoft-Phi-3.5-mini-instruct.jinja"), "<s>", "<|endoftext|>", base, [{}]),
        ("llama-3.1", "meta-llama-Llama-3.1-8B-Instruct.jinja",
         file("meta-llama-Llama-3.1-8B-Instruct.jinja"), "<|begin_of_text|>", "<|eot_id|>",
         base + [("tools", QWEN3_TOOLS[:2])], llama_extra),
        ("llama-3.2", "meta-llama-Llama-3.2-3B-Instruct.jinja",
         file("meta-llama-Llama-3.2-3B-Instruct.jinja"), "<|begin_of_text|>", "<|eot_id|>", base,
         llama_extra),
        ("llama-3.3", "meta-llama-Llama-3.3-70B-Instruct.jinja",
         file("meta-llama-Llama-3.3-70B-Instruct.jinja"), "<|begin_of_text|>", "<|eot_id|>", base,
         llama_extra),
        ("gemma", "google-gemma-2-2b-it.jinja", file("google-gemma-2-2b-it.jinja"), "<bos>", "<eos>",
         base, [{}]),
        ("gemma-4", "google-gemma-4-31B-it.jinja", file("google-gemma-4-31B-it.jinja"), "<bos>",
         "<eos>", base + [("tools", QWEN3_TOOLS)], [{}, {"enable_thinking": True}]),
    ]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, origin, source, bos, eos, conversations, extras in template_specs():
        cases = []
        for conv_name, messages in conversations:
            for extra in extras:
                extra = copy.deepcopy(extra)
                if conv_name == "tools":
                    extra["tools"] = [WEATHER_TOOL]
                for add_generation_prompt in (True, False):
                    result = render(source, bos, eos, copy.deepcopy(messages), add_generation_prompt, extra)
                    cases.append({
                        "conversation": conv_name,
                        "messages": messages,
                        "add_generation_prompt": add_generation_prompt,
                        "extra": extra,
                        **result,
                    })
        golden = {"name": name, "origin": origin, "bos_token": bos, "eos_token": eos,
                  "template": source, "cases": cases}
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        errors = sum(1 for c in cases if "error" in c)
        print(f"{name}: {len(cases)} cases ({errors} raise) -> {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
