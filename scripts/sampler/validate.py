#!/usr/bin/env python3
"""Validate JSON documents against a JSON Schema (Draft 2020-12) with Python's jsonschema.

Usage: validate.py SCHEMA.json < outputs.jsonl   (one JSON document per line)
Prints one line per invalid document and exits 1 if any is invalid; prints the count of
valid documents otherwise. tern-sampler's constrained-decoding tests use it as an oracle
independent of the code under test.
"""
import json
import sys

import jsonschema

schema = json.load(open(sys.argv[1], encoding="utf-8"))
validator = jsonschema.Draft202012Validator(schema)
bad = 0
count = 0
for number, line in enumerate(sys.stdin, 1):
    if not line.strip():
        continue
    count += 1
    document = json.loads(line)
    errors = list(validator.iter_errors(document))
    if errors:
        bad += 1
        print(f"line {number}: {errors[0].message}: {line.strip()[:200]}")
if bad:
    sys.exit(1)
print(f"{count} valid")
