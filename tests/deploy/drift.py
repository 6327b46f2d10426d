#!/usr/bin/python3
"""The drift test of the deployment files: everything docker-compose.yml and
the rendered Kubernetes manifests name must exist in the code.

usage: drift.py REPO BUILD_DIR RENDERED.yaml...

- start order: a depends_on condition service_healthy names a service with
  a health check, service_completed_successfully a one-shot;
- images: the sluice image is sluice:<project version of CMakeLists.txt>
  everywhere (an overlay may move it to a registry, not to another
  version); every third-party image is pinned (no latest, a tag) and the
  ones Kubernetes uses are the ones docker-compose.yml uses, tag for tag;
- the image: deploy/Dockerfile builds and copies every program of
  CMakeLists.txt (sluice and each sluice-* executable);
- commands: a sluice-* program is a target the build made (BUILD_DIR) and
  an add_executable of CMakeLists.txt; `sluice X` is a command of
  `sluice --help`; also inside sh -c scripts;
- environment: every SLUICE_* variable set in compose or Kubernetes (env,
  ConfigMap and Secret keys, KEDA's *FromEnv) is read by the C sources (a
  "SLUICE_..." literal, or a literal prefix such as SLUICE_WEBHOOK_SECRET_)
  or, failing that, documented in docs/configuration.md; a configMapKeyRef,
  secretKeyRef, configMapRef or secretRef names an object (and key) of the
  render; a *FromEnv of a ScaledObject is in its target's environment;
- ports: each container port, probe port and published port is the port of
  an address setting (SLUICE_METRICS_ADDR, SLUICE_HTTP_ADDR) whose default
  in the C sources has that port, and the Dockerfile EXPOSEs it;
- topics: create-topics.sh creates exactly the topics of bus.h; a
  ScaledObject's topic is one of its stage's inputs (<stage>_inputs in
  services/<stage>/<stage>.c), its consumer group sluice-<stage> of the
  program its target Deployment runs.
Exit 0 when nothing drifted, 1 with a line per problem."""
import glob
import os
import re
import subprocess
import sys

import yaml

REPO, BUILD = sys.argv[1], sys.argv[2]
RENDERED = sys.argv[3:]
problems = []


def bad(msg):
    problems.append(msg)


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8", errors="replace") as f:
        return f.read()


C_SOURCES = "".join(read(os.path.relpath(p, REPO)) for p in
                    glob.glob(os.path.join(REPO, "common/src/*.c")) +
                    glob.glob(os.path.join(REPO, "common/include/sluice/*.h")) +
                    glob.glob(os.path.join(REPO, "services/*/*.c")))
C_LITERALS = set(re.findall(r'"(SLUICE_[A-Z0-9_]*)"', C_SOURCES))
CONFIG_DOC = read("docs/configuration.md")
CMAKE = read("CMakeLists.txt")
VERSION = re.search(r"project\(sluice VERSION ([0-9.]+)", CMAKE).group(1)
DOCKERFILE = read("deploy/Dockerfile")
EXPOSED = {int(p) for line in re.findall(r"^EXPOSE (.*)$", DOCKERFILE, re.M) for p in line.split()}

# ---- the objects -------------------------------------------------------------
with open(os.path.join(REPO, "docker-compose.yml"), encoding="utf-8") as f:
    COMPOSE = yaml.safe_load(f)
K8S = []
for path in RENDERED:
    with open(path, encoding="utf-8") as f:
        K8S += [(path, d) for d in yaml.safe_load_all(f) if d]


def pod_spec(obj):
    if obj["kind"] in ("Deployment", "Job"):
        return obj["spec"]["template"]["spec"]
    return None


# ---- images ------------------------------------------------------------------
def image_parts(image):
    name, _, tag = image.rpartition(":")
    if "/" in tag or not name:
        return image, None
    return name, tag


compose_images = {}
for svc, s in COMPOSE["services"].items():
    compose_images[svc] = s.get("image")
    if not s.get("image"):
        bad(f"compose: service {svc} has no image")
third_party_compose = {i for i in compose_images.values() if i and image_parts(i)[0] != "sluice"}
for svc, image in compose_images.items():
    if not image:
        continue
    name, tag = image_parts(image)
    if tag in (None, "latest"):
        bad(f"compose: service {svc}: image {image} is not pinned to a tag")
    if name == "sluice" and tag != VERSION:
        bad(f"compose: service {svc}: image {image}, but the project's version is {VERSION}")
    if name == "sluice" and s.get("build", {}).get("dockerfile", "deploy/Dockerfile") != "deploy/Dockerfile":
        bad(f"compose: service {svc} builds another Dockerfile")
for path, obj in K8S:
    spec = pod_spec(obj)
    if not spec:
        continue
    for c in spec.get("initContainers", []) + spec["containers"]:
        image = c.get("image", "")
        name, tag = image_parts(image)
        where = f"{path}: {obj['kind']}/{obj['metadata']['name']}"
        if tag in (None, "latest"):
            bad(f"{where}: image {image} is not pinned to a tag")
        if name == "sluice" or name.endswith("/sluice"):
            if tag != VERSION:
                bad(f"{where}: image {image}, but the project's version is {VERSION}")
        elif image not in third_party_compose:
            bad(f"{where}: image {image} is not one of docker-compose.yml's ({', '.join(sorted(third_party_compose))})")

# ---- compose's start order --------------------------------------------------
# service_healthy needs a health check (the service's or its image's: the
# sluice image has one); service_completed_successfully a one-shot
for svc, s in COMPOSE["services"].items():
    deps = s.get("depends_on") or {}
    if isinstance(deps, list):
        continue
    for dep, cond in deps.items():
        d = COMPOSE["services"].get(dep)
        if d is None:
            bad(f"compose: service {svc} depends on {dep}, which is no service")
            continue
        cond = (cond or {}).get("condition", "service_started")
        hc = d.get("healthcheck") or {}
        if cond == "service_healthy" and (hc.get("disable") or not hc.get("test")):
            bad(f"compose: service {svc} waits for {dep} to be healthy, but {dep} has no health check")
        if cond == "service_completed_successfully" and str(d.get("restart", "no")) != "no":
            bad(f"compose: service {svc} waits for {dep} to complete, but {dep} restarts")

# ---- commands ----------------------------------------------------------------
help_text = subprocess.run([os.path.join(BUILD, "sluice"), "--help"], capture_output=True, text=True).stdout
CLI_COMMANDS = set(re.findall(r"^  ([a-z]+)\b", help_text, re.M))
if "run" not in CLI_COMMANDS:
    bad(f"cannot read the commands of {BUILD}/sluice --help")
TARGETS = set(re.findall(r"add_executable\((sluice-[a-z$\{\}]+)", CMAKE))
STAGES = re.search(r"set\(SLUICE_STAGES ([a-z ]+)\)", CMAKE).group(1).split()
TARGETS = {t for t in TARGETS if "$" not in t} | {f"sluice-{s}" for s in STAGES}
WORD = re.compile(r"(?<![\w./:-])(sluice(?:-[a-z]+)?)(?:[ \t]+([a-z]+))?")


def check_command(where, argv):
    if not argv:
        return
    words = [argv] if isinstance(argv, str) else argv
    if words[0] in ("/bin/sh", "sh") and "-c" in words:
        text = words[words.index("-c") + 1]
        calls = WORD.findall(text)
    else:
        calls = [(words[0], words[1] if len(words) > 1 else "")]
    for prog, sub in calls:
        if prog == "sluice":
            if sub and sub not in CLI_COMMANDS and not sub.startswith("-"):
                bad(f"{where}: 'sluice {sub}' is not a command of sluice --help")
        elif prog.startswith("sluice-"):
            if prog not in TARGETS:
                bad(f"{where}: {prog} is not an executable of CMakeLists.txt")
            elif not os.access(os.path.join(BUILD, prog), os.X_OK):
                bad(f"{where}: {prog} was not built in {BUILD}")


# the image carries every program: the Dockerfile builds and copies each
df = DOCKERFILE.replace("\\\n", " ")
m = re.search(r"--target ([^&]*)", df)
built = set(m.group(1).split()) if m else set()
copied = set(re.findall(r"build/(sluice[a-z-]*)", df.split("cp ", 1)[-1].split("/out/bin/")[0])) if "cp " in df else set()
if built != TARGETS | {"sluice_cli"}:
    bad(f"deploy/Dockerfile builds {sorted(built)}, CMakeLists.txt has {sorted(TARGETS | {'sluice_cli'})}")
if copied != TARGETS | {"sluice"}:
    bad(f"deploy/Dockerfile copies {sorted(copied)} into the image, the programs are {sorted(TARGETS | {'sluice'})}")

for svc, s in COMPOSE["services"].items():
    if image_parts(s.get("image", ""))[0] == "sluice":
        check_command(f"compose: service {svc}", s.get("command"))
for path, obj in K8S:
    spec = pod_spec(obj)
    for c in (spec or {}).get("containers", []):
        if image_parts(c.get("image", ""))[0].endswith("sluice"):
            check_command(f"{path}: {obj['kind']}/{obj['metadata']['name']}", c.get("command"))

# ---- environment -------------------------------------------------------------


def check_env_name(where, name):
    if not name.startswith("SLUICE_"):
        return
    if name in C_LITERALS or any(name.startswith(p) for p in C_LITERALS if p.endswith("_")):
        return
    if re.search(r"`" + re.escape(name) + r"`", CONFIG_DOC):
        return
    bad(f"{where}: {name} is read by no C source and not in docs/configuration.md")


def compose_env(s):
    env = s.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return env


for svc, s in COMPOSE["services"].items():
    for name in compose_env(s):
        check_env_name(f"compose: service {svc}", name)

configmaps, secrets = {}, {}
for path, obj in K8S:
    if obj["kind"] == "ConfigMap":
        configmaps[(path, obj["metadata"]["name"])] = obj.get("data") or {}
    if obj["kind"] == "Secret":
        secrets[(path, obj["metadata"]["name"])] = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
    for key in list((obj.get("data") or {})) + list((obj.get("stringData") or {})):
        if obj["kind"] in ("ConfigMap", "Secret"):
            check_env_name(f"{path}: {obj['kind']}/{obj['metadata']['name']}", key)


def container_env(path, c):
    """The variables a container sees: env and every envFrom source."""
    names = {e["name"] for e in c.get("env", [])}
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            names |= set(configmaps.get((path, src["configMapRef"]["name"]), {}))
        if "secretRef" in src:
            names |= set(secrets.get((path, src["secretRef"]["name"]), {}))
    return names


deployments = {}
for path, obj in K8S:
    spec = pod_spec(obj)
    if not spec:
        continue
    where = f"{path}: {obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] == "Deployment":
        deployments[(path, obj["metadata"]["name"])] = obj
    for c in spec["containers"]:
        for e in c.get("env", []):
            check_env_name(where, e["name"])
            ref = (e.get("valueFrom") or {})
            for kind, objs in (("configMapKeyRef", configmaps), ("secretKeyRef", secrets)):
                if kind in ref:
                    o = objs.get((path, ref[kind]["name"]))
                    if o is None or ref[kind]["key"] not in o:
                        bad(f"{where}: {kind} {ref[kind]['name']}/{ref[kind]['key']} is not in the render")
        for src in c.get("envFrom", []):
            for kind, objs in (("configMapRef", configmaps), ("secretRef", secrets)):
                if kind in src and (path, src[kind]["name"]) not in objs:
                    bad(f"{where}: {kind} {src[kind]['name']} is not in the render")

# ---- ports -------------------------------------------------------------------
# the address settings and their default ports in the C sources
ADDR_DEFAULTS = {}
for name, port in re.findall(r'"(SLUICE_[A-Z_]*ADDR)",\s*"--[a-z-]+",\s*"[0-9.:\[\]]*:([0-9]+)"', C_SOURCES):
    ADDR_DEFAULTS.setdefault(name, set()).add(int(port))
KNOWN_PORTS = {p for ps in ADDR_DEFAULTS.values() for p in ps}
for want in ("SLUICE_METRICS_ADDR", "SLUICE_HTTP_ADDR"):
    if want not in ADDR_DEFAULTS:
        bad(f"no default of {want} found in the C sources")


def check_port(where, port):
    if port not in KNOWN_PORTS:
        bad(f"{where}: port {port} is no default port of {', '.join(sorted(ADDR_DEFAULTS))}")
    if port not in EXPOSED:
        bad(f"{where}: port {port} is not EXPOSEd by deploy/Dockerfile")


def check_addr_values(where, env):
    for name, value in env.items():
        if name in ADDR_DEFAULTS and value:
            port = int(str(value).rpartition(":")[2])
            if port not in ADDR_DEFAULTS[name]:
                bad(f"{where}: {name}={value}, but the code's default port is {sorted(ADDR_DEFAULTS[name])} "
                    "(the probes, Services and EXPOSE use that)")


for svc, s in COMPOSE["services"].items():
    if image_parts(s.get("image", ""))[0] != "sluice":
        continue
    check_addr_values(f"compose: service {svc}", compose_env(s))
    for p in s.get("ports", []):
        target = int(str(p).rpartition(":")[2].split("/")[0])
        check_port(f"compose: service {svc}", target)
for (path, name), data in configmaps.items():
    check_addr_values(f"{path}: ConfigMap/{name}", data)
for path, obj in K8S:
    spec = pod_spec(obj)
    if not spec or obj["kind"] != "Deployment":
        continue
    where = f"{path}: {obj['kind']}/{obj['metadata']['name']}"
    for c in spec["containers"]:
        named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        for p in named.values():
            check_port(where, p)
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
            if isinstance(port, str) and port not in named:
                bad(f"{where}: {probe} port {port} is no port of the container")
            elif isinstance(port, int):
                check_port(where, port)
            path_ = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
            if path_ and f'"{path_.strip("/")}"' not in C_SOURCES:
                bad(f"{where}: {probe} path {path_} is served by no C source")
    if obj["kind"] == "Service":
        pass
for path, obj in K8S:
    if obj["kind"] == "Service":
        for p in obj["spec"].get("ports", []):
            check_port(f"{path}: Service/{obj['metadata']['name']}", p["port"])

# ---- topics ------------------------------------------------------------------
BUS = read("common/include/sluice/bus.h")
TOPIC_MACROS = dict(re.findall(r'#define (SL_TOPIC_[A-Z]+)\s+"([a-z.]+)"', BUS))
TOPICS = set(TOPIC_MACROS.values())
script = read("deploy/k8s/base/create-topics.sh")
m = re.search(r"^for t in ([a-z. ]+); do", script, re.M)
created = set(m.group(1).split()) if m else set()
if created != TOPICS:
    bad(f"create-topics.sh creates {sorted(created)}, bus.h has {sorted(TOPICS)}")


def stage_inputs(stage):
    src = read(f"services/{stage}/{stage}.c")
    m = re.search(r"_inputs\[\]\s*=\s*\{([^}]*)\}", src)
    return {TOPIC_MACROS.get(t.strip()) for t in m.group(1).split(",") if t.strip() and t.strip() != "NULL"} if m else set()


for path, obj in K8S:
    if obj["kind"] != "ScaledObject":
        continue
    where = f"{path}: ScaledObject/{obj['metadata']['name']}"
    target = deployments.get((path, obj["spec"]["scaleTargetRef"]["name"]))
    if not target:
        bad(f"{where}: its target {obj['spec']['scaleTargetRef']['name']} is no Deployment of the render")
        continue
    c = target["spec"]["template"]["spec"]["containers"][0]
    program = (c.get("command") or [""])[0]
    stage = program[len("sluice-"):] if program.startswith("sluice-") else ""
    prefix = configmaps.get((path, "sluice-config"), {}).get("SLUICE_TOPIC_PREFIX", "sluice.")
    env = container_env(path, c)
    for trig in obj["spec"]["triggers"]:
        md = trig.get("metadata", {})
        for k, v in md.items():
            if k.endswith("FromEnv") and v not in env:
                bad(f"{where}: {k}: {v} is not in the environment of {target['metadata']['name']}")
        if trig["type"] != "kafka":
            continue
        if md.get("consumerGroup") != f"sluice-{stage}":
            bad(f"{where}: consumerGroup {md.get('consumerGroup')}, but {program}'s group is sluice-{stage}")
        topic = md.get("topic", "")
        if not topic.startswith(prefix) or topic[len(prefix):] not in stage_inputs(stage):
            bad(f"{where}: topic {topic} is not an input of the {stage} stage "
                f"({', '.join(prefix + t for t in sorted(stage_inputs(stage)))})")

for p in problems:
    print(f"drift: {p}")
print(f"drift.py: {len(problems)} problems")
sys.exit(1 if problems else 0)
