"""The official `openai` Python package against a running `tern serve`.

Run by crates/cli/tests/model_serve.rs, which starts the server on an ephemeral loopback
port and sets TERN_TEST_BASE_URL (http://127.0.0.1:PORT), TERN_TEST_API_KEY and
TERN_TEST_MODEL. The server runs with --max-tokens 256.
"""

import json
import os
import unittest
import urllib.error
import urllib.request

import jsonschema
import openai

BASE = os.environ["TERN_TEST_BASE_URL"]
KEY = os.environ["TERN_TEST_API_KEY"]
MODEL = os.environ["TERN_TEST_MODEL"]


def client(key=KEY):
    # No retries: a retried 429 or 5xx would hide what the server answered.
    return openai.OpenAI(base_url=BASE + "/v1", api_key=key, max_retries=0, timeout=300)


MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


class Chat(unittest.TestCase):
    def test_whole_answer(self):
        answer = client().chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=24, temperature=0
        )
        self.assertEqual(answer.object, "chat.completion")
        self.assertEqual(answer.model, MODEL)
        choice = answer.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertTrue(choice.message.content)
        self.assertIn(choice.finish_reason, ("stop", "length"))
        usage = answer.usage
        self.assertGreater(usage.prompt_tokens, 10)
        self.assertTrue(1 <= usage.completion_tokens <= 24)
        self.assertEqual(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)

    def test_stream_with_usage(self):
        stream = client().chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_completion_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finish, usage = "", None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
        self.assertTrue(text)
        self.assertIn(finish, ("stop", "length"))
        self.assertIsNotNone(usage)
        self.assertTrue(1 <= usage.completion_tokens <= 24)

    def test_sampling_parameters_are_accepted(self):
        answer = client().chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=8,
            temperature=0.7,
            top_p=0.9,
            seed=42,
            presence_penalty=0.5,
            frequency_penalty=0.5,
            stop=["\n\n"],
        )
        self.assertTrue(answer.choices[0].message.content is not None)
        again = client().chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=8,
            temperature=0.7,
            top_p=0.9,
            seed=42,
            presence_penalty=0.5,
            frequency_penalty=0.5,
            stop=["\n\n"],
        )
        self.assertEqual(len(again.choices), 1)

    def test_logprobs(self):
        answer = client().chat.completions.create(
            model=MODEL, messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True, top_logprobs=2
        )
        content = answer.choices[0].logprobs.content
        self.assertEqual(len(content), answer.usage.completion_tokens)
        for entry in content:
            self.assertEqual(len(entry.top_logprobs), 2)
            self.assertLessEqual(entry.logprob, 0.0)
            self.assertEqual(entry.token, entry.top_logprobs[0].token)

    def test_json_schema_output_is_valid(self):
        schema = {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "population": {"type": "integer"},
                "capital": {"type": "boolean"},
            },
            "required": ["city", "population", "capital"],
            "additionalProperties": False,
        }
        answer = client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Describe Paris as JSON."}],
            max_tokens=120,
            temperature=0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": schema, "strict": True},
            },
        )
        self.assertEqual(answer.choices[0].finish_reason, "stop")
        value = json.loads(answer.choices[0].message.content)
        jsonschema.validate(value, schema)

    def test_json_object_output(self):
        answer = client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Give a JSON object describing a cat."}],
            max_tokens=120,
            temperature=0,
            response_format={"type": "json_object"},
        )
        if answer.choices[0].finish_reason == "stop":
            self.assertIsInstance(json.loads(answer.choices[0].message.content), dict)


class Completions(unittest.TestCase):
    def test_whole_and_streamed(self):
        answer = client().completions.create(
            model=MODEL, prompt="Once upon a time", max_tokens=6, temperature=0
        )
        self.assertEqual(answer.object, "text_completion")
        self.assertEqual(answer.choices[0].finish_reason, "length")
        self.assertEqual(answer.usage.completion_tokens, 6)
        self.assertTrue(answer.choices[0].text)
        pieces, finish = [], None
        for chunk in client().completions.create(
            model=MODEL, prompt="The sun is", max_tokens=6, temperature=0, stream=True
        ):
            for choice in chunk.choices:
                pieces.append(choice.text)
                finish = choice.finish_reason or finish
        self.assertTrue("".join(pieces))
        self.assertEqual(finish, "length")


class Models(unittest.TestCase):
    def test_list(self):
        ids = [m.id for m in client().models.list()]
        self.assertIn(MODEL, ids)


class Embeddings(unittest.TestCase):
    def test_vectors_are_unit_length_and_tell_texts_apart(self):
        texts = ["The cat sat on the mat.", "A cat was sitting on the mat.", "def f(x): return x * 2"]
        answer = client().embeddings.create(model=MODEL, input=texts)
        self.assertEqual([d.index for d in answer.data], [0, 1, 2])
        vectors = [d.embedding for d in answer.data]
        self.assertTrue(all(len(v) == len(vectors[0]) > 0 for v in vectors))
        for v in vectors:
            self.assertAlmostEqual(sum(x * x for x in v), 1.0, places=4)
        cosine = lambda a, b: sum(x * y for x, y in zip(a, b))
        # Two paraphrases are closer to each other than either is to code.
        self.assertGreater(cosine(vectors[0], vectors[1]), cosine(vectors[0], vectors[2]))
        self.assertGreater(answer.usage.prompt_tokens, 0)

    def test_base64_encoding(self):
        answer = client().embeddings.create(model=MODEL, input="hello", encoding_format="base64")
        self.assertEqual(len(answer.data), 1)
        self.assertTrue(answer.data[0].embedding)


class Errors(unittest.TestCase):
    def test_wrong_key_is_401(self):
        with self.assertRaises(openai.AuthenticationError) as caught:
            client(key="wrong-key").chat.completions.create(model=MODEL, messages=MESSAGES)
        self.assertEqual(caught.exception.status_code, 401)
        self.assertEqual(caught.exception.body["type"], "authentication_error")

    def test_unknown_model_is_404(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            client().chat.completions.create(model="no-such-model", messages=MESSAGES)
        self.assertEqual(caught.exception.body["code"], "model_not_found")

    def test_over_limit_max_tokens_is_400(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100000)
        self.assertEqual(caught.exception.body["param"], "max_tokens")
        self.assertIn("256", caught.exception.body["message"])

    def test_bad_parameter_is_400(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            client().chat.completions.create(model=MODEL, messages=MESSAGES, temperature=5)
        self.assertEqual(caught.exception.body["param"], "temperature")

    def test_malformed_json_gets_the_error_shape(self):
        request = urllib.request.Request(
            BASE + "/v1/chat/completions",
            data=b'{"model": ',
            headers={"Content-Type": "application/json", "Authorization": "Bearer " + KEY},
        )
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=60)
        self.assertEqual(caught.exception.code, 400)
        error = json.loads(caught.exception.read())["error"]
        self.assertEqual(sorted(error), ["code", "message", "param", "type"])


if __name__ == "__main__":
    unittest.main()
