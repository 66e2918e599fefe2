"""Writes memprobe/schema/memprobe-2.schema.json from the result's types:
`python3 -m memprobe.schema` (tests/test_result.py checks the shipped file is current)."""

import json

from memprobe.result import SCHEMA_FILE, json_schema

SCHEMA_FILE.write_text(json.dumps(json_schema(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
print(f"wrote {SCHEMA_FILE}")
