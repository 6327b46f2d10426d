#!/usr/bin/python3
"""Validates Kubernetes manifests (the output of kubectl kustomize, one or
more YAML streams) offline against the JSON schemas in schemas/: one file
per kind (Deployment, Service, ConfigMap, Secret, Job, PodDisruptionBudget,
HorizontalPodAutoscaler autoscaling/v2, NetworkPolicy, PersistentVolumeClaim,
KEDA's ScaledObject keda.sh/v1alpha1, the Prometheus Operator's
ServiceMonitor), shared definitions in schemas/_defs.json. Objects are
strict where the API is (an unknown or misspelt field is an error). A kind
without a schema is an error too, so that a new kind gets one.

usage: validate.py FILE... (- for standard input); exit 0 when every object
is valid, 1 with a line per problem otherwise."""
import json
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "schemas")


def load_schemas():
    store, by_kind = {}, {}
    for name in sorted(os.listdir(SCHEMAS)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(SCHEMAS, name), encoding="utf-8") as f:
            schema = json.load(f)
        store[schema["$id"]] = schema
        if not name.startswith("_"):
            kind = schema["properties"]["kind"]["const"]
            by_kind[kind] = schema
    return store, by_kind


def main(paths):
    store, by_kind = load_schemas()
    problems = count = 0
    for path in paths:
        f = sys.stdin if path == "-" else open(path, encoding="utf-8")
        with f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for doc in docs:
            count += 1
            kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
            name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
            where = f"{path}: {kind}/{name}"
            schema = by_kind.get(kind)
            if schema is None:
                print(f"{where}: no schema for kind {kind} in {SCHEMAS}")
                problems += 1
                continue
            resolver = jsonschema.RefResolver(schema["$id"], schema, store=store)
            validator = jsonschema.Draft7Validator(schema, resolver=resolver)
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                field = "/".join(str(p) for p in err.absolute_path) or "(top)"
                print(f"{where}: {field}: {err.message}")
                problems += 1
    if count == 0:
        print("validate.py: no objects to validate")
        return 1
    print(f"validate.py: {count} objects, {problems} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["-"]))
