#!/usr/bin/python3
"""Prints what docker-compose.yml gives one service, for tests/deploy/demo.sh
to run the same program on loopback: `env SERVICE` prints its environment,
one NAME=VALUE a line, `command SERVICE` its command, NUL-separated. Values
are interpolated as compose does (${VAR:-default} from the environment,
$$ is $), then the compose host names and the image's paths are mapped:
SUBST is a list of FROM=TO arguments applied to every value in order.

usage: compose_env.py REPO env|command SERVICE [FROM=TO]..."""
import os
import re
import sys

import yaml

repo, what, service = sys.argv[1:4]
subst = [a.split("=", 1) for a in sys.argv[4:]]
with open(os.path.join(repo, "docker-compose.yml"), encoding="utf-8") as f:
    svc = yaml.safe_load(f)["services"][service]


def interpolate(value):
    def var(m):
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(3)
        v = os.environ.get(name)
        return v if v else (default or "")
    out = re.sub(r"\$\$|\$\{(\w+)(:-([^}]*))?\}", var, str(value))
    for a, b in subst:
        out = out.replace(a, b)
    return out


if what == "env":
    env = svc.get("environment") or {}
    for k, v in env.items():
        print(f"{k}={interpolate('' if v is None else v)}")
else:
    cmd = svc["command"]
    cmd = cmd.split() if isinstance(cmd, str) else cmd
    sys.stdout.write("\0".join(interpolate(c) for c in cmd) + "\0")
