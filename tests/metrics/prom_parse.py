#!/usr/bin/env python3
"""Reads Prometheus text exposition on stdin, parses it with the reference parser
(prometheus_client, Debian's python3-prometheus-client) and prints every sample as one JSON
line: {"name", "labels", "value", "type"}. Exits non-zero if the text does not parse."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

try:
    for family in text_string_to_metric_families(sys.stdin.read()):
        for sample in family.samples:
            print(json.dumps({"name": sample.name, "labels": sample.labels,
                              "value": sample.value, "type": family.type}))
except Exception as e:  # the parser's own message is the point of this tool
    print(f"prom_parse: {e}", file=sys.stderr)
    sys.exit(1)
