#!/usr/bin/env python3
"""Cross-reference checks of the rendered overlays (run by validate.sh after rendering).

Usage: check-wiring.py RENDERED.yaml...     (the overlay's name is the file's stem: dev, prod)
Binaries: $LEARNHUB_BIN_DIR, else ../target/debug, else ../target/release (relative to deploy/).

Each check takes parsed objects (and what it needs from the binaries and the docs) and returns
Findings, one line each: `OVERLAY: Kind/name: what is wrong [check]`.

service  A Service's selector matches the labels of a pod template (Deployment, StatefulSet,
         DaemonSet, ReplicaSet, Job, CronJob, Pod) in its namespace, and each port's
         targetPort (number or name; absent: port) is a containerPort of every selected
         template.
probe    Every liveness/readiness/startup probe's httpGet/tcpSocket/grpc port (number or name)
         is a containerPort declared by the probed container itself.
ref      Every secretKeyRef/configMapKeyRef, envFrom secretRef/configMapRef and secret/configMap
         volume (with its items; projected volumes too) names an object the overlay defines,
         with that key. A Secret the overlay does not define passes only in an overlay whose
         README section documents the operator's Secrets (OPERATOR_SECRET_SECTIONS: prod ->
         "## Production overlay" of deploy/README.md), and only when that section names the
         Secret in backticks immediately followed by its keys, in one of these forms:
             `a` and `b`, key `K`        `a`, `b` (key `K`)        `a` (`K`)
             `a`, `b` and `c`, each with `k1` (comment), `k2` and `k3`
         A volume without items needs the name only; a key the section does not name after the
         Secret fails. Every Secret of overlays/prod/secrets.example.yaml must be documented
         so, with the same keys. Optional references are checked too: a typo there is silent.
env      Every environment variable of a container of our image (IMAGE_NAME) is read by the
         binary it runs: the binary is command[0] (no command: the Dockerfile's ENTRYPOINT), the
         subcommand the first word of command[1:] + args that is not an option, and the names
         it reads are the `[env: NAME...]` of `BIN --help` and `BIN SUBCOMMAND --help` (clap).
         Also allowed: LIBRARY_ENV (read by libraries, each with where; the cited text must
         still be in that file) and variables that another variable, the command or args of
         the same container uses as $(NAME) (Kubernetes dependent variables).
grace    terminationGracePeriodSeconds (default 30) of each pod template is greater than each
         container's preStop sleep plus its drain time. Drain: a binary option whose env name
         says DRAIN or SHUTDOWN (the container's value, else the --help default); none exists
         today, so for a serving container (its --help reads LISTEN_ADDR) it is DRAIN_TIMEOUT
         from kit/src/server.rs, compiled into every binary.
netpol   Every NetworkPolicy's spec.podSelector selects a pod template of its namespace, and so
         does every podSelector of an ingress `from` / egress `to` peer: without a
         namespaceSelector it selects in the policy's namespace; with one that pins namespaces
         by name (kubernetes.io/metadata.name) that are all in the render, in those; with any
         other namespaceSelector (another namespace, labels, {}) its pods are outside the
         render and it is not checked.

KNOWN_FINDINGS lists findings reported but not yet fixed (each printed on every run with its
reason); one that no longer occurs is an error, so the list cannot go stale.
Needs PyYAML (pinned in validate.sh's virtualenv).
"""
import argparse
import dataclasses
import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Our image: the repository part of `image:` (registry, tag and digest stripped).
IMAGE_NAME = "learnhub"
# The binaries of that image and the overlays' Dockerfile (ENTRYPOINT when a container has no command).
DOCKERFILE = HERE / "Dockerfile"
README = HERE / "README.md"
SECRETS_EXAMPLE = HERE / "overlays" / "prod" / "secrets.example.yaml"
# Overlay -> the deploy/README.md section that lists the Secrets the operator creates for it.
OPERATOR_SECRET_SECTIONS = {"prod": "Production overlay"}
# The drain after SIGTERM, when no binary option sets it: a constant of the shared server code.
DRAIN_SOURCE = ("kit/src/server.rs", "DRAIN_TIMEOUT")
KUBERNETES_DEFAULT_GRACE = 30

# Variables read by libraries, not by clap: name -> (binaries, file, text that reads it there).
ALL_BINARIES = ("gateway", "catalog-svc", "enrollment-svc", "cache-svc")
DB_BINARIES = ("catalog-svc", "enrollment-svc")
LIBRARY_ENV = {
    # tracing-subscriber's EnvFilter::try_from_default_env reads RUST_LOG (telemetry::init,
    # called by every binary's main).
    "RUST_LOG": (ALL_BINARIES, "kit/src/telemetry.rs", "EnvFilter::try_from_default_env()"),
    "OTEL_EXPORTER_OTLP_ENDPOINT": (ALL_BINARIES, "kit/src/telemetry.rs",
                                    'std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")'),
    "OTEL_SERVICE_NAME": (ALL_BINARIES, "kit/src/telemetry.rs", 'env("OTEL_SERVICE_NAME")'),
    "OTEL_RESOURCE_ATTRIBUTES": (ALL_BINARIES, "kit/src/telemetry.rs",
                                 'env("OTEL_RESOURCE_ATTRIBUTES")'),
    "OTEL_TRACES_SAMPLER": (ALL_BINARIES, "kit/src/telemetry.rs",
                            'std::env::var("OTEL_TRACES_SAMPLER")'),
    "OTEL_TRACES_SAMPLER_ARG": (ALL_BINARIES, "kit/src/telemetry.rs",
                                'std::env::var("OTEL_TRACES_SAMPLER_ARG")'),
    # rustls-native-certs (Postgres TLS, db/src/pg_target.rs) reads SSL_CERT_FILE/SSL_CERT_DIR.
    "SSL_CERT_FILE": (DB_BINARIES, "db/src/pg_target.rs", "rustls_native_certs::load_native_certs"),
    "SSL_CERT_DIR": (DB_BINARIES, "db/src/pg_target.rs", "rustls_native_certs::load_native_certs"),
}
# redis's tokio-rustls-comp loads the roots with rustls-native-certs as well (the workspace
# Cargo.toml says so next to the dependency): cache-svc reads SSL_CERT_FILE for rediss://.
LIBRARY_ENV_CACHE = {
    "SSL_CERT_FILE": (("cache-svc",), "Cargo.toml", "SSL_CERT_FILE"),
}

# Findings reported but not fixed yet: exact line -> reason. Printed on every run; an entry
# that no longer occurs fails the run (remove it once fixed).
KNOWN_FINDINGS: dict[str, str] = {}

POD_TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


class SetupError(Exception):
    """Something the checks need is missing (a binary, a source file): not a finding."""


@dataclasses.dataclass(frozen=True, order=True)
class Finding:
    overlay: str
    obj: str
    message: str
    check: str

    def __str__(self):
        return f"{self.overlay}: {self.obj}: {self.message} [{self.check}]"


# ---------------------------------------------------------------------------------------------
# Objects


def load_rendered(path):
    return [doc for doc in yaml.safe_load_all(Path(path).read_text()) if doc]


def ref(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def namespace_of(obj):
    return obj.get("metadata", {}).get("namespace") or "default"


def pod_templates(objects):
    """(workload, namespace, template) for every pod template in objects."""
    for obj in objects:
        kind = obj.get("kind")
        if kind not in POD_TEMPLATE_KINDS:
            continue
        if kind == "Pod":
            template = {"metadata": obj.get("metadata", {}), "spec": obj.get("spec", {})}
        elif kind == "CronJob":
            template = obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {})
        else:
            template = obj.get("spec", {}).get("template", {})
        yield obj, namespace_of(obj), template


def template_labels(template):
    return template.get("metadata", {}).get("labels") or {}


def all_containers(spec):
    """(list name, container) for containers and initContainers."""
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            yield field, container


def serving_containers(spec):
    """Containers whose ports a Service can reach: containers and sidecar initContainers."""
    for field, container in all_containers(spec):
        if field == "containers" or container.get("restartPolicy") == "Always":
            yield container


def labels_text(labels):
    return "{" + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def selector_text(selector):
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        parts.append(f"{expr.get('key')} {expr.get('operator')} {expr.get('values', [])}")
    return "{" + ", ".join(parts) + "}"


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels + matchExpressions); {} matches everything."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def near(word, candidates, cutoff=0.6):
    match = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=cutoff)
    return f" (did you mean {match[0]}?)" if match else ""


def label_hint(match_labels, labels_list):
    """A near miss of a key=value among the labels of the templates, for the finding's line."""
    hints = []
    for key, value in sorted(match_labels.items()):
        values = {labels[key] for labels in labels_list if key in labels}
        keys = {k for labels in labels_list for k in labels}
        if key not in keys:
            hints.append(near(key, keys, 0.8))
        elif value not in values:
            hints.append(near(value, values, 0.8).replace("mean ", f"mean {key}="))
    return "".join(hints)


# ---------------------------------------------------------------------------------------------
# 1. Services and probes


def check_services(overlay, objects):
    findings = []
    templates = list(pod_templates(objects))
    for svc in objects:
        if svc.get("kind") != "Service":
            continue
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector or spec.get("type") == "ExternalName":
            continue  # endpoints managed by hand, or a DNS alias
        ns = namespace_of(svc)
        selected = [(w, t) for w, wns, t in templates
                    if wns == ns and selector_matches({"matchLabels": selector}, template_labels(t))]
        if not selected:
            hint = label_hint(selector, [template_labels(t) for _, wns, t in templates if wns == ns])
            findings.append(Finding(overlay, ref(svc), f"selector {labels_text(selector)} matches no pod "
                                    f"template in namespace {ns}{hint}", "service"))
            continue
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for workload, template in selected:
                declared = [p for c in serving_containers(template.get("spec") or {})
                            for p in c.get("ports") or []]
                if isinstance(target, int):
                    ok = any(p.get("containerPort") == target for p in declared)
                    candidates = [p.get("containerPort") for p in declared]
                else:
                    ok = any(p.get("name") == target for p in declared)
                    candidates = [p.get("name") for p in declared if p.get("name")]
                if not ok:
                    findings.append(Finding(
                        overlay, ref(svc),
                        f"port {port.get('name') or port.get('port')}: targetPort {target} is not a "
                        f"containerPort of {ref(workload)} (declared: "
                        f"{', '.join(str(c) for c in candidates) or 'none'}){near(target, candidates)}",
                        "service"))
    return findings


def check_probes(overlay, objects):
    findings = []
    for workload, _ns, template in pod_templates(objects):
        for _field, container in all_containers(template.get("spec") or {}):
            ports = container.get("ports") or []
            for probe_name in PROBES:
                probe = container.get(probe_name)
                if not probe:
                    continue
                for handler in ("httpGet", "tcpSocket", "grpc"):
                    if handler not in probe:
                        continue
                    port = probe[handler].get("port")
                    if isinstance(port, int):
                        ok = any(p.get("containerPort") == port for p in ports)
                        candidates = [p.get("containerPort") for p in ports]
                    else:
                        ok = any(p.get("name") == port for p in ports)
                        candidates = [p.get("name") for p in ports if p.get("name")]
                    if not ok:
                        findings.append(Finding(
                            overlay, ref(workload),
                            f"container {container.get('name')}: {probe_name} {handler} port {port} is "
                            f"not a containerPort of the container (declared: "
                            f"{', '.join(str(c) for c in candidates) or 'none'}){near(port, candidates)}",
                            "probe"))
    return findings


# ---------------------------------------------------------------------------------------------
# 2. Secret and ConfigMap references


def readme_section(text, heading):
    """The text of the `## heading` section of a Markdown file, up to the next `## `."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == heading
            continue
        if inside:
            lines.append(line)
    return "\n".join(lines)


_NAME = re.compile(r"`([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)`")
_KEY = re.compile(r"`([-._A-Za-z0-9]+)`")
_SEP = re.compile(r"(?:,\s*and\s+|,\s*|\s+and\s+)(?=`)")
_COMMENT = re.compile(r"\s*\([^()`]*\)")
_KEYS_AFTER = re.compile(r",?\s*(?:each with|keys?)\s+(?=`)")
_KEYS_IN_PARENS = re.compile(r"\s*\((?:keys?\s+)?(?=`)")


def _key_list(text, pos):
    keys = []
    while True:
        m = _KEY.match(text, pos)
        if not m:
            return keys, pos
        keys.append(m.group(1))
        pos = m.end()
        comment = _COMMENT.match(text, pos)
        if comment:
            pos = comment.end()
        sep = _SEP.match(text, pos)
        if not sep:
            return keys, pos
        pos = sep.end()


def documented_secrets(section_text):
    """Secret name -> keys, from the rule in the module docstring (names followed by keys)."""
    text = " ".join(section_text.split())
    found, pos = {}, 0
    while True:
        m = _NAME.search(text, pos)
        if not m:
            return found
        names, pos = [m.group(1)], m.end()
        while True:
            sep = _SEP.match(text, pos)
            nxt = sep and _NAME.match(text, sep.end())
            if not nxt:
                break
            names.append(nxt.group(1))
            pos = nxt.end()
        keys = []
        spec = _KEYS_AFTER.match(text, pos)
        if spec:
            keys, pos = _key_list(text, spec.end())
        else:
            spec = _KEYS_IN_PARENS.match(text, pos)
            if spec:
                keys, end = _key_list(text, spec.end())
                if text.startswith(")", end):
                    pos = end + 1
                else:
                    keys = []
        if keys:
            for name in names:
                found.setdefault(name, set()).update(keys)


def operator_secrets(overlay, readme_text):
    heading = OPERATOR_SECRET_SECTIONS.get(overlay)
    return documented_secrets(readme_section(readme_text, heading)) if heading else {}


def check_secrets_example(readme_text, example_objects):
    """Every Secret of secrets.example.yaml is documented in the README with the same keys."""
    findings = []
    for overlay, heading in OPERATOR_SECRET_SECTIONS.items():
        documented = operator_secrets(overlay, readme_text)
        for obj in example_objects:
            if obj.get("kind") != "Secret":
                continue
            name = obj["metadata"]["name"]
            keys = set(obj.get("data") or {}) | set(obj.get("stringData") or {})
            if documented.get(name) != keys:
                findings.append(Finding(
                    overlay, f"{SECRETS_EXAMPLE.relative_to(HERE)} Secret/{name}",
                    f"keys {sorted(keys)}, but deploy/README.md ({heading}) documents "
                    f"{sorted(documented[name]) if name in documented else 'no such Secret'}", "ref"))
    return findings


def _references(spec):
    """(where, kind, name, key or None, optional) for each Secret/ConfigMap reference of a pod."""
    for _field, c in all_containers(spec):
        cname = f"container {c.get('name')}"
        for env in c.get("env") or []:
            source = env.get("valueFrom") or {}
            for field, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                if field in source:
                    r = source[field]
                    yield (f"{cname}: env {env.get('name')} {field}", kind, r.get("name"), r.get("key"),
                           r.get("optional", False))
        for env_from in c.get("envFrom") or []:
            for field, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if field in env_from:
                    r = env_from[field]
                    yield f"{cname}: envFrom {field}", kind, r.get("name"), None, r.get("optional", False)
    for volume in spec.get("volumes") or []:
        sources = [volume] + list((volume.get("projected") or {}).get("sources") or [])
        for source in sources:
            for field, kind, name_field in (("secret", "Secret", "secretName"), ("configMap", "ConfigMap", "name")):
                if field not in source:
                    continue
                r = source[field]
                name = r.get(name_field) or r.get("name")
                where = f"volume {volume.get('name')} {field}"
                items = r.get("items") or []
                if not items:
                    yield where, kind, name, None, r.get("optional", False)
                for item in items:
                    yield f"{where} item", kind, name, item.get("key"), r.get("optional", False)


def defined_keys(objects):
    """(kind, namespace, name) -> keys, for the Secrets and ConfigMaps of the render."""
    defined = {}
    for obj in objects:
        if obj.get("kind") in ("Secret", "ConfigMap"):
            keys = set(obj.get("data") or {}) | set(obj.get("stringData") or {}) | set(obj.get("binaryData") or {})
            defined[(obj["kind"], namespace_of(obj), obj["metadata"]["name"])] = keys
    return defined


def check_refs(overlay, objects, documented):
    """documented: Secret name -> keys the operator creates (operator_secrets)."""
    findings = []
    defined = defined_keys(objects)
    for workload, ns, template in pod_templates(objects):
        for where, kind, name, key, optional in _references(template.get("spec") or {}):
            opt = " (optional: a missing one is silently skipped)" if optional else ""
            if (kind, ns, name) in defined:
                keys = defined[(kind, ns, name)]
                if key is not None and key not in keys:
                    findings.append(Finding(overlay, ref(workload),
                                            f"{where}: {kind} {name} has no key {key} (keys: "
                                            f"{', '.join(sorted(keys))}){near(key, keys)}{opt}", "ref"))
            elif kind == "Secret" and name in documented:
                if key is not None and key not in documented[name]:
                    findings.append(Finding(
                        overlay, ref(workload),
                        f"{where}: Secret {name} is created by the operator with keys "
                        f"{', '.join(sorted(documented[name]))} (deploy/README.md), not {key}"
                        f"{near(key, documented[name])}{opt}", "ref"))
            else:
                names = [n for (k, kns, n) in defined if k == kind and kns == ns]
                if kind == "Secret":
                    names += list(documented)
                findings.append(Finding(
                    overlay, ref(workload),
                    f"{where}: {kind} {name} is not in the overlay"
                    + (" nor documented in deploy/README.md as created by the operator" if kind == "Secret" else "")
                    + f"{near(name, names)}{opt}", "ref"))
    return findings


# ---------------------------------------------------------------------------------------------
# 3. Environment variables against the binaries


@dataclasses.dataclass
class Help:
    envs: dict          # env name -> default (str) or None
    value_options: set  # options that take a value (--log-format), to find the subcommand
    subcommands: list


_ENV = re.compile(r"\[env: ([A-Za-z_][A-Za-z0-9_]*)")
_DEFAULT = re.compile(r"\[default: ([^\]]*)\]")
_OPTION = re.compile(r"^\s+(?:-\w, )?(--[a-z0-9][-a-z0-9]*) <")  # an option that takes a value


def parse_help(text):
    envs, value_options, subcommands, section = {}, set(), [], None
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            section = line[:-1]
            continue
        if section == "Commands":
            m = re.match(r"^\s+([a-z][-a-z0-9]*)\b", line)
            if m and m.group(1) != "help":
                subcommands.append(m.group(1))
            continue
        option = _OPTION.match(line)
        if option:
            value_options.add(option.group(1))
        env = _ENV.search(line)
        if env:
            default = _DEFAULT.search(line)
            envs[env.group(1)] = default.group(1) if default else None
    return Help(envs, value_options, subcommands)


@dataclasses.dataclass
class Binary:
    name: str
    path: str
    top: Help
    subcommands: dict  # subcommand -> Help


def bin_dir_candidates():
    if os.environ.get("LEARNHUB_BIN_DIR"):
        return [Path(os.environ["LEARNHUB_BIN_DIR"])]
    return [HERE.parent / "target" / "debug", HERE.parent / "target" / "release"]


def _run_help(path, *args):
    try:
        out = subprocess.run([str(path), *args, "--help"], capture_output=True, text=True, timeout=30,
                             env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=False)
    except OSError as err:
        raise SetupError(f"cannot run {path}: {err}") from err
    if out.returncode != 0:
        raise SetupError(f"`{path} {' '.join(args)} --help` exited {out.returncode}: {out.stderr.strip()[:300]}")
    return out.stdout


def load_binary(name, dirs=None):
    dirs = dirs or bin_dir_candidates()
    for directory in dirs:
        path = directory / name
        if path.is_file() and os.access(path, os.X_OK):
            top = parse_help(_run_help(path))
            subs = {sub: parse_help(_run_help(path, sub)) for sub in top.subcommands}
            return Binary(name, str(path), top, subs)
    raise SetupError(f"binary {name} not found in {' or '.join(str(d) for d in dirs)} "
                     "(set LEARNHUB_BIN_DIR, or build it: cargo build --bin " + name + ")")


def dockerfile_entrypoint(text):
    entry = None
    for line in text.splitlines():
        m = re.match(r"^\s*ENTRYPOINT\s+(\[.*\])\s*$", line)
        if m:
            entry = yaml.safe_load(m.group(1))
    return entry or []


def is_our_image(image):
    repo = image.split("@")[0]
    last = repo.rsplit("/", 1)[-1]
    return last.split(":")[0] == IMAGE_NAME


@dataclasses.dataclass
class Program:
    binary: str
    subcommand: object  # str, or None
    words: list


def container_program(container, entrypoint):
    words = list(container.get("command") or entrypoint) + list(container.get("args") or [])
    if not words:
        return None
    return Program(os.path.basename(words[0]), None, words[1:])


def resolve_subcommand(program, binary):
    """The subcommand the words name, or (None, problem)."""
    words = program.words
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            i += 1
            break
        if word.startswith("-"):
            if "=" not in word and word in binary.top.value_options:
                i += 1
            i += 1
            continue
        break
    if not binary.subcommands:
        return None, None
    if i >= len(words):
        return None, f"runs {binary.name} with no subcommand (it has: {', '.join(binary.subcommands)})"
    if words[i] not in binary.subcommands:
        return None, (f"runs {binary.name} {words[i]}, which is not one of its subcommands "
                      f"({', '.join(binary.subcommands)}){near(words[i], binary.subcommands)}")
    return words[i], None


def needed_binaries(objects, entrypoint):
    names = set()
    for _w, _ns, template in pod_templates(objects):
        for _f, c in all_containers(template.get("spec") or {}):
            if is_our_image(c.get("image", "")):
                program = container_program(c, entrypoint)
                if program:
                    names.add(program.binary)
    return names


def verify_library_env(root=REPO):
    """LIBRARY_ENV's citations still hold: each cited file has the cited text."""
    findings = []
    for table in (LIBRARY_ENV, LIBRARY_ENV_CACHE):
        for name, (_bins, path, text) in table.items():
            file = Path(root) / path
            if not file.is_file():
                raise SetupError(f"LIBRARY_ENV cites {path} for {name}, which does not exist under {root}")
            if text not in file.read_text():
                findings.append(Finding("-", "check-wiring.py LIBRARY_ENV",
                                        f"{name} is cited as read in {path} by `{text}`, which is no longer "
                                        f"there: find where it is read now, or drop it", "env"))
    return findings


def library_env_for(binary):
    allowed = {}
    for table in (LIBRARY_ENV, LIBRARY_ENV_CACHE):
        for name, (bins, path, _text) in table.items():
            if binary in bins:
                allowed[name] = path
    return allowed


def container_env(container, defined, documented, ns):
    """(name, origin, value or None) of every variable a container gets."""
    out = []
    for env_from in container.get("envFrom") or []:
        prefix = env_from.get("prefix", "")
        for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if field in env_from:
                name = env_from[field].get("name")
                keys = defined.get((kind, ns, name))
                if keys is None and kind == "Secret":
                    keys = documented.get(name, set())
                for key in sorted(keys or ()):
                    out.append((prefix + key, f"envFrom {kind} {name}", None))
    for env in container.get("env") or []:
        out.append((env.get("name"), "env", env.get("value")))
    return out


def check_env(overlay, objects, binaries, entrypoint, documented):
    """binaries: name -> Binary (load_binary)."""
    findings = []
    defined = defined_keys(objects)
    for workload, ns, template in pod_templates(objects):
        for _field, c in all_containers(template.get("spec") or {}):
            if not is_our_image(c.get("image", "")):
                continue
            where = f"container {c.get('name')}"
            program = container_program(c, entrypoint)
            if program is None:
                findings.append(Finding(overlay, ref(workload), f"{where}: no command, and the Dockerfile "
                                        "has no ENTRYPOINT: cannot tell which binary it runs", "env"))
                continue
            binary = binaries.get(program.binary)
            if binary is None:
                findings.append(Finding(overlay, ref(workload),
                                        f"{where}: runs {program.binary}, "
                                        f"which is not one of the image's binaries "
                                        f"({', '.join(sorted(binaries))}){near(program.binary, binaries)}", "env"))
                continue
            sub, problem = resolve_subcommand(program, binary)
            if problem:
                findings.append(Finding(overlay, ref(workload), f"{where}: {problem}", "env"))
                continue
            reads = dict(binary.top.envs)
            if sub:
                reads.update(binary.subcommands[sub].envs)
            library = library_env_for(binary.name)
            variables = container_env(c, defined, documented, ns)
            text = " ".join([str(v or "") for _n, _o, v in variables]
                            + [str(w) for w in (c.get("command") or []) + (c.get("args") or [])])
            dependent = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text))
            run = f"{binary.name}{' ' + sub if sub else ''}"
            for name, origin, _value in variables:
                if name in reads or name in library or name in dependent:
                    continue
                findings.append(Finding(
                    overlay, ref(workload),
                    f"{where}: {origin} sets {name}, which `{run}` does not read (not in its --help "
                    f"[env: ...], not read by a library, not used as $({name})){near(name, list(reads) + list(library))}",
                    "env"))
    return findings


# ---------------------------------------------------------------------------------------------
# 4. Grace period against preStop + drain


def drain_constant(root=REPO):
    path, const = DRAIN_SOURCE
    file = Path(root) / path
    if not file.is_file():
        raise SetupError(f"{path} (the drain time {const}) does not exist under {root}")
    m = re.search(const + r"\s*:\s*[\w:]*Duration\s*=\s*[\w:]*Duration::from_(secs|millis)\((\d+)\)",
                  file.read_text())
    if not m:
        raise SetupError(f"cannot find `const {const}: Duration = Duration::from_secs(N)` in {path}")
    seconds = int(m.group(2)) / (1000 if m.group(1) == "millis" else 1)
    return seconds, f"{const}, {path}"


def prestop_seconds(container):
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in hook:
        return int(hook["sleep"].get("seconds", 0))
    command = " ".join(str(w) for w in (hook.get("exec") or {}).get("command") or [])
    m = re.search(r"\bsleep\s+(\d+)", command)
    return int(m.group(1)) if m else 0


_DRAIN_ENV = re.compile(r"DRAIN|SHUTDOWN")


def drain_seconds(container, binary, sub, drain_default, env_values):
    """(seconds, where it comes from) of a container of our image, or (0, None)."""
    helps = [binary.top] + ([binary.subcommands[sub]] if sub else [])
    for help_ in helps:
        for name, default in help_.envs.items():
            if _DRAIN_ENV.search(name):
                value = env_values.get(name, default)
                try:
                    return float(re.sub(r"[^0-9.]", "", str(value))), f"{name}={value}"
                except ValueError:
                    return 0, None
    if any("LISTEN_ADDR" in h.envs for h in helps):
        return drain_default
    return 0, None


def check_grace(overlay, objects, binaries, entrypoint, drain_default, documented=None):
    """drain_default: (seconds, source) from drain_constant()."""
    findings = []
    cm_values = {(namespace_of(o), o["metadata"]["name"]): o.get("data") or {}
                 for o in objects if o.get("kind") == "ConfigMap"}
    for workload, ns, template in pod_templates(objects):
        spec = template.get("spec") or {}
        grace = spec.get("terminationGracePeriodSeconds", KUBERNETES_DEFAULT_GRACE)
        for c in spec.get("containers") or []:
            prestop = prestop_seconds(c)
            drain, source = 0, None
            if is_our_image(c.get("image", "")):
                program = container_program(c, entrypoint)
                binary = program and binaries.get(program.binary)
                if binary:
                    sub, problem = resolve_subcommand(program, binary)
                    if not problem:
                        values = {}
                        for env_from in c.get("envFrom") or []:
                            name = (env_from.get("configMapRef") or {}).get("name")
                            values.update(cm_values.get((ns, name), {}))
                        values.update({e["name"]: e["value"] for e in c.get("env") or [] if "value" in e})
                        drain, source = drain_seconds(c, binary, sub, drain_default, values)
            if prestop + drain == 0:
                continue
            if not grace > prestop + drain:
                shown = "unset, Kubernetes default " if "terminationGracePeriodSeconds" not in spec else ""
                findings.append(Finding(
                    overlay, ref(workload),
                    f"terminationGracePeriodSeconds {shown}{grace} is not greater than container "
                    f"{c.get('name')}'s preStop sleep {prestop:g} s + drain {drain:g} s"
                    f"{f' ({source})' if source else ''} = {prestop + drain:g} s: SIGKILL ends the drain",
                    "grace"))
    return findings


# ---------------------------------------------------------------------------------------------
# 5. NetworkPolicy selectors


def rendered_namespaces(objects):
    """namespace -> labels (with the automatic kubernetes.io/metadata.name)."""
    namespaces = {}
    for obj in objects:
        if obj.get("kind") == "Namespace":
            name = obj["metadata"]["name"]
            namespaces[name] = dict(obj["metadata"].get("labels") or {}, **{NAMESPACE_NAME_LABEL: name})
    for obj in objects:
        if obj.get("kind") in POD_TEMPLATE_KINDS or obj.get("kind") == "NetworkPolicy":
            ns = namespace_of(obj)
            namespaces.setdefault(ns, {NAMESPACE_NAME_LABEL: ns})
    return namespaces


def pinned_namespaces(selector):
    """The namespace names a namespaceSelector pins by kubernetes.io/metadata.name, or None."""
    pinned = None
    if NAMESPACE_NAME_LABEL in (selector.get("matchLabels") or {}):
        pinned = {selector["matchLabels"][NAMESPACE_NAME_LABEL]}
    for expr in selector.get("matchExpressions") or []:
        if expr.get("key") == NAMESPACE_NAME_LABEL and expr.get("operator") == "In":
            values = set(expr.get("values") or [])
            pinned = values if pinned is None else pinned & values
    return pinned


def check_network_policies(overlay, objects):
    findings = []
    templates = list(pod_templates(objects))
    namespaces = rendered_namespaces(objects)

    def selects(selector, in_namespaces):
        return any(wns in in_namespaces and selector_matches(selector, template_labels(t))
                   for _w, wns, t in templates)

    def hint(selector, in_namespaces):
        return label_hint(selector.get("matchLabels") or {},
                          [template_labels(t) for _w, wns, t in templates if wns in in_namespaces])

    for policy in objects:
        if policy.get("kind") != "NetworkPolicy":
            continue
        ns = namespace_of(policy)
        spec = policy.get("spec") or {}
        selector = spec.get("podSelector") or {}
        if not selects(selector, {ns}):
            findings.append(Finding(overlay, ref(policy), f"podSelector {selector_text(selector)} selects no "
                                    f"pod template in namespace {ns}{hint(selector, {ns})}", "netpol"))
        for direction, peers_field in (("ingress", "from"), ("egress", "to")):
            for i, rule in enumerate(spec.get(direction) or []):
                for peer in rule.get(peers_field) or []:
                    if "podSelector" not in peer:
                        continue
                    pod_selector = peer.get("podSelector") or {}
                    if "namespaceSelector" in peer:
                        pinned = pinned_namespaces(peer.get("namespaceSelector") or {})
                        if not pinned or not pinned <= set(namespaces):
                            continue  # pods of other namespaces: outside the render
                        in_namespaces = pinned
                    else:
                        in_namespaces = {ns}
                    if not selects(pod_selector, in_namespaces):
                        findings.append(Finding(
                            overlay, ref(policy),
                            f"{direction}[{i}].{peers_field} podSelector {selector_text(pod_selector)} selects "
                            f"no pod template in namespace {', '.join(sorted(in_namespaces))}"
                            f"{hint(pod_selector, in_namespaces)}", "netpol"))
    return findings


# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    """What the checks need besides the objects: the binaries, the docs, the drain default."""
    binaries: dict
    entrypoint: list
    readme_text: str
    drain_default: tuple


def load_context(overlays, readme=README, dockerfile=DOCKERFILE, root=REPO):
    """overlays: name -> objects. Runs the binaries the overlays use (SetupError when missing)."""
    entrypoint = dockerfile_entrypoint(Path(dockerfile).read_text())
    names = set()
    for objects in overlays.values():
        names |= needed_binaries(objects, entrypoint)
    binaries = {}
    for name in sorted(names):
        if name in ALL_BINARIES:
            binaries[name] = load_binary(name)
    return Context(binaries, entrypoint, Path(readme).read_text(), drain_constant(root))


def check_overlay(overlay, objects, ctx):
    documented = operator_secrets(overlay, ctx.readme_text)
    findings = []
    findings += check_services(overlay, objects)
    findings += check_probes(overlay, objects)
    findings += check_refs(overlay, objects, documented)
    findings += check_env(overlay, objects, ctx.binaries, ctx.entrypoint, documented)
    findings += check_grace(overlay, objects, ctx.binaries, ctx.entrypoint, ctx.drain_default)
    findings += check_network_policies(overlay, objects)
    return sorted(set(findings))


def check_all(overlays, ctx, example_objects=None, root=REPO):
    findings = []
    for overlay, objects in overlays.items():
        findings += check_overlay(overlay, objects, ctx)
    findings += verify_library_env(root)
    if example_objects is not None:
        findings += check_secrets_example(ctx.readme_text, example_objects)
    return findings


def split_known(findings):
    """(new findings, known findings that occurred, known entries that no longer occur)."""
    lines = {str(f) for f in findings}
    new = [f for f in findings if str(f) not in KNOWN_FINDINGS]
    known = [f for f in findings if str(f) in KNOWN_FINDINGS]
    stale = [line for line in KNOWN_FINDINGS if line not in lines]
    return new, known, stale


def summary(overlay, objects):
    templates = list(pod_templates(objects))
    containers = [c for _w, _n, t in templates for _f, c in all_containers(t.get("spec") or {})]
    return (f"{overlay}: {sum(o.get('kind') == 'Service' for o in objects)} Services, "
            f"{sum(p in c for c in containers for p in PROBES)} probes, "
            f"{sum(1 for _w, _n, t in templates for _r in _references(t.get('spec') or {}))} Secret/ConfigMap refs, "
            f"{sum(is_our_image(c.get('image', '')) for c in containers)} containers of {IMAGE_NAME} "
            f"(env vars), {len(templates)} pod templates, "
            f"{sum(o.get('kind') == 'NetworkPolicy' for o in objects)} NetworkPolicies")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rendered", nargs="+", help="rendered overlay (its stem names it: dev.yaml -> dev)")
    args = parser.parse_args(argv)
    overlays = {Path(p).name.split(".")[0]: load_rendered(p) for p in args.rendered}
    try:
        ctx = load_context(overlays)
        example = load_rendered(SECRETS_EXAMPLE) if SECRETS_EXAMPLE.is_file() else None
        findings = check_all(overlays, ctx, example)
    except SetupError as err:
        print(f"check-wiring: {err}", file=sys.stderr)
        return 2
    for name, binary in sorted(ctx.binaries.items()):
        subs = ", ".join(f"{s} {len(h.envs)}" for s, h in binary.subcommands.items())
        print(f"binary {binary.path}: {len(binary.top.envs)} env names{'; ' + subs if subs else ''}")
    print(f"drain when no option sets it: {ctx.drain_default[0]:g} s ({ctx.drain_default[1]})")
    for overlay, objects in overlays.items():
        print(summary(overlay, objects))
    new, known, stale = split_known(findings)
    for finding in known:
        print(f"KNOWN (reported, not fixed yet: {KNOWN_FINDINGS[str(finding)]}): {finding}")
    for finding in new:
        print(finding)
    for line in stale:
        print(f"check-wiring.py KNOWN_FINDINGS: no longer found, remove it: {line}")
    if new or stale:
        print(f"check-wiring: {len(new)} finding(s), {len(stale)} stale known finding(s)", file=sys.stderr)
        return 1
    print("wiring: selectors, ports, probes, refs, env, grace periods and NetworkPolicies agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
