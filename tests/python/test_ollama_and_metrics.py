"""Ollama-style requests (NDJSON streams, as Ollama's clients send them) and the
Prometheus exposition, parsed by the official `prometheus_client` parser, against a
running `tern serve` (see test_openai_client.py for the environment)."""

import json
import os
import unittest
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

BASE = os.environ["TERN_TEST_BASE_URL"]
KEY = os.environ["TERN_TEST_API_KEY"]
MODEL = os.environ["TERN_TEST_MODEL"]


def post(path, body):
    request = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY},
    )
    return urllib.request.urlopen(request, timeout=300)


def ndjson(response):
    """Reads an NDJSON stream line by line, as Ollama's clients do."""
    lines = []
    for raw in response:
        line = raw.decode().strip()
        if line:
            lines.append(json.loads(line))
    return lines


class Ollama(unittest.TestCase):
    def test_generate_streams_ndjson(self):
        with post(
            "/api/generate",
            {"model": MODEL, "prompt": "Why is the sky blue?", "options": {"temperature": 0, "num_predict": 10}},
        ) as response:
            self.assertEqual(response.headers["Content-Type"], "application/x-ndjson")
            lines = ndjson(response)
        *parts, last = lines
        self.assertTrue(parts)
        self.assertTrue(all(p["done"] is False and "response" in p for p in parts))
        self.assertIs(last["done"], True)
        self.assertEqual(last["eval_count"], 10)
        self.assertEqual(last["done_reason"], "length")
        self.assertTrue("".join(p["response"] for p in parts))

    def test_chat_streams_ndjson_and_answers_whole(self):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hello!"}],
            "options": {"temperature": 0, "num_predict": 12},
        }
        with post("/api/chat", body) as response:
            *parts, last = ndjson(response)
        self.assertTrue(all(p["message"]["role"] == "assistant" for p in parts))
        self.assertTrue("".join(p["message"]["content"] for p in parts))
        self.assertIs(last["done"], True)
        with post("/api/chat", dict(body, stream=False)) as response:
            whole = json.loads(response.read())
        self.assertIs(whole["done"], True)
        self.assertTrue(whole["message"]["content"])

    def test_format_json(self):
        body = {
            "model": MODEL,
            "prompt": "A JSON object with a name.",
            "format": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "stream": False,
            "options": {"temperature": 0, "num_predict": 60},
        }
        with post("/api/generate", body) as response:
            whole = json.loads(response.read())
        if whole["done_reason"] == "stop":
            self.assertIsInstance(json.loads(whole["response"])["name"], str)

    def test_tags_and_ps(self):
        request = urllib.request.Request(BASE + "/api/tags", headers={"Authorization": "Bearer " + KEY})
        with urllib.request.urlopen(request, timeout=60) as response:
            tags = json.loads(response.read())
        self.assertIn(MODEL, [m["name"] for m in tags["models"]])


class Metrics(unittest.TestCase):
    def test_exposition_parses(self):
        # Make sure at least one generation was measured.
        with post("/v1/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 3}) as response:
            response.read()
        request = urllib.request.Request(BASE + "/metrics", headers={"Authorization": "Bearer " + KEY})
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name in (
            "tern_http_requests",
            "tern_time_to_first_token_seconds",
            "tern_inter_token_latency_seconds",
            "tern_prompt_tokens",
            "tern_generated_tokens",
            "tern_queue_depth",
            "tern_active_sequences",
            "tern_model_memory_estimate_bytes",
            "tern_process_resident_memory_bytes",
        ):
            self.assertIn(name, families)
        ttft = families["tern_time_to_first_token_seconds"]
        self.assertEqual(ttft.type, "histogram")
        count = [s.value for s in ttft.samples if s.name.endswith("_count") and s.labels["model"] == MODEL]
        self.assertTrue(count and count[0] >= 1)


if __name__ == "__main__":
    unittest.main()
