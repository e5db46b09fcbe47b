"""Mutation tests of check-wiring.py: each test puts one real mistake into an in-memory copy of a
rendered overlay and asserts that check-wiring reports it, with the expected check and line.

Run (validate.sh does, with the overlays it rendered in $LEARNHUB_RENDERED_DIR/{dev,prod}.yaml;
without it the overlays are rendered here with kubectl kustomize or kustomize build):
    cd deploy && python -m unittest -v test_check_wiring
At the end it prints the mutation table: each mistake -> the check that caught it.
"""
import copy
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("check_wiring", HERE / "check-wiring.py")
cw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cw)

OVERLAYS = {}   # name -> rendered objects
BASELINE = {}   # name -> findings of the unmutated render
CTX = None
TABLE = []      # (mistake, overlay, check, finding)


def render(overlay):
    rendered_dir = os.environ.get("LEARNHUB_RENDERED_DIR")
    if rendered_dir:
        return cw.load_rendered(Path(rendered_dir) / f"{overlay}.yaml")
    if shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(HERE / "overlays" / overlay)]
    else:
        cmd = ["kustomize", "build", str(HERE / "overlays" / overlay)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [doc for doc in cw.yaml.safe_load_all(out) if doc]


def setUpModule():
    global CTX
    for overlay in ("dev", "prod"):
        OVERLAYS[overlay] = render(overlay)
    CTX = cw.load_context(OVERLAYS)
    for overlay, objects in OVERLAYS.items():
        BASELINE[overlay] = cw.check_overlay(overlay, objects, CTX)


def tearDownModule():
    if not TABLE:
        return
    width = max(len(m) for m, *_ in TABLE)
    lines = ["", "mutation table (mistake -> the check that caught it; its finding below)"]
    for mistake, overlay, check, finding in TABLE:
        lines.append(f"  {mistake:<{width}}  -> {check} ({overlay})")
        lines.append(f"      {finding}")
    print("\n".join(lines), file=sys.stderr)


def obj(objects, kind, name):
    """The object of that kind named name (ConfigMaps/Secrets: also name-<kustomize hash>)."""
    for o in objects:
        actual = o["metadata"]["name"]
        if o["kind"] == kind and (actual == name or (kind in ("ConfigMap", "Secret")
                                                     and actual.rsplit("-", 1)[0] == name)):
            return o
    raise KeyError(f"{kind}/{name}")


def container(workload, name, field="containers"):
    for c in workload["spec"]["template"]["spec"].get(field) or []:
        if c["name"] == name:
            return c
    raise KeyError(name)


def env(c, name):
    for e in c.get("env") or []:
        if e["name"] == name:
            return e
    raise KeyError(name)


class Mutations(unittest.TestCase):
    def caught(self, mistake, overlay, mutate, check, *needles):
        objects = copy.deepcopy(OVERLAYS[overlay])
        mutate(objects)
        new = sorted(set(cw.check_overlay(overlay, objects, CTX)) - set(BASELINE[overlay]))
        hits = [f for f in new if f.check == check and all(n in str(f) for n in needles)]
        self.assertTrue(hits, f"{mistake}: no new [{check}] finding with {needles}; new findings: "
                              f"{[str(f) for f in new]}")
        TABLE.append((mistake, overlay, check, str(hits[0])))
        return hits

    # -- the unmutated render

    def test_00_unmutated_render_passes(self):
        example = cw.load_rendered(cw.SECRETS_EXAMPLE) if cw.SECRETS_EXAMPLE.is_file() else None
        new, _known, stale = cw.split_known(cw.check_all(OVERLAYS, CTX, example))
        self.assertEqual([str(f) for f in new], [])
        self.assertEqual(stale, [])

    # -- 1. Services and probes

    def test_probe_port_name(self):
        def mutate(objects):
            container(obj(objects, "Deployment", "catalog-svc"), "catalog-svc")["readinessProbe"]["httpGet"]["port"] = "metric"
        self.caught("readinessProbe port name typo (metrics -> metric)", "prod", mutate, "probe",
                    "prod: Deployment/catalog-svc", "readinessProbe httpGet port metric ")

    def test_probe_port_number(self):
        def mutate(objects):
            container(obj(objects, "Deployment", "gateway"), "gateway")["livenessProbe"]["httpGet"]["port"] = 8081
        self.caught("livenessProbe wrong port number (8081)", "dev", mutate, "probe",
                    "dev: Deployment/gateway", "livenessProbe httpGet port 8081")

    def test_service_selector_typo(self):
        def mutate(objects):
            obj(objects, "Service", "catalog-svc")["spec"]["selector"]["app.kubernetes.io/name"] = "catalog-svx"
        self.caught("Service selector typo (catalog-svx)", "prod", mutate, "service",
                    "prod: Service/catalog-svc", "catalog-svx", "matches no pod template")

    def test_service_target_port(self):
        def mutate(objects):
            obj(objects, "Service", "cache-svc")["spec"]["ports"][0]["targetPort"] = 50054
        self.caught("Service targetPort not a containerPort (50054)", "dev", mutate, "service",
                    "dev: Service/cache-svc", "targetPort 50054")

    def test_service_target_port_name(self):
        def mutate(objects):
            obj(objects, "Service", "gateway")["spec"]["ports"][0]["targetPort"] = "htttp"
        self.caught("Service targetPort name typo (htttp)", "prod", mutate, "service",
                    "prod: Service/gateway", "targetPort htttp")

    # -- 2. Secret and ConfigMap references

    def test_secret_key_ref_typo_operator_secret(self):
        def mutate(objects):
            c = container(obj(objects, "Deployment", "catalog-svc"), "catalog-svc")
            env(c, "DATABASE_URL")["valueFrom"]["secretKeyRef"]["key"] = "DATABASE_ULR"
        self.caught("secretKeyRef key typo, operator's Secret (DATABASE_ULR)", "prod", mutate, "ref",
                    "prod: Deployment/catalog-svc", "Secret catalog-db", "not DATABASE_ULR")

    def test_secret_key_ref_typo_overlay_secret(self):
        def mutate(objects):
            c = container(obj(objects, "Deployment", "cache-svc"), "cache-svc")
            env(c, "REDIS_URL")["valueFrom"]["secretKeyRef"]["key"] = "REDIS_URI"
        self.caught("secretKeyRef key typo, generated Secret (REDIS_URI)", "dev", mutate, "ref",
                    "dev: Deployment/cache-svc", "has no key REDIS_URI")

    def test_secret_name_typo(self):
        def mutate(objects):
            c = container(obj(objects, "Deployment", "gateway"), "gateway")
            env(c, "AUTH_JWT_SECRET")["valueFrom"]["secretKeyRef"]["name"] = "gateway-auht"
        self.caught("secretKeyRef name typo (gateway-auht)", "prod", mutate, "ref",
                    "prod: Deployment/gateway", "Secret gateway-auht is not in the overlay")

    def test_secret_volume_name_typo(self):
        def mutate(objects):
            for volume in obj(objects, "Deployment", "enrollment-svc")["spec"]["template"]["spec"]["volumes"]:
                if "secret" in volume:
                    volume["secret"]["secretName"] = "enrolment-svc-tls"
        self.caught("secret volume name typo (enrolment-svc-tls)", "prod", mutate, "ref",
                    "prod: Deployment/enrollment-svc", "Secret enrolment-svc-tls")

    def test_config_map_key_ref_typo(self):
        def add(key):
            def mutate(objects):
                common = obj(objects, "ConfigMap", "learnhub-common")["metadata"]["name"]
                c = container(obj(objects, "Deployment", "gateway"), "gateway")
                c["env"].append({"name": "LOG_FORMAT",
                                 "valueFrom": {"configMapKeyRef": {"name": common, "key": key}}})
            return mutate
        # The right key is accepted ...
        objects = copy.deepcopy(OVERLAYS["dev"])
        add("LOG_FORMAT")(objects)
        self.assertEqual(set(cw.check_overlay("dev", objects, CTX)) - set(BASELINE["dev"]), set())
        # ... a typo is not.
        self.caught("configMapKeyRef key typo (LOG_FROMAT)", "dev", add("LOG_FROMAT"), "ref",
                    "dev: Deployment/gateway", "has no key LOG_FROMAT", "(did you mean LOG_FORMAT?)")

    def test_config_map_volume_item_typo(self):
        def mutate(objects):
            for volume in obj(objects, "Deployment", "grafana")["spec"]["template"]["spec"]["volumes"]:
                if volume["name"] == "datasources":
                    volume["configMap"]["items"][0]["key"] = "datasource.yaml"
        self.caught("configMap volume item key typo (datasource.yaml)", "dev", mutate, "ref",
                    "dev: Deployment/grafana", "has no key datasource.yaml")

    # -- 3. Environment variables against the binaries

    def test_env_not_read_configmap(self):
        def mutate(objects):
            data = obj(objects, "ConfigMap", "enrollment-svc-config")["data"]
            data["CATALOG_ADR"] = data.pop("CATALOG_ADDR")
        self.caught("env name the binary does not read (CATALOG_ADR, via ConfigMap)", "dev", mutate, "env",
                    "dev: Deployment/enrollment-svc", "sets CATALOG_ADR", "`enrollment-svc serve` does not read")

    def test_env_not_read_direct(self):
        def mutate(objects):
            env(container(obj(objects, "Deployment", "gateway"), "gateway"), "TLS_CA_FILE")["name"] = "TLS_CA_PATH"
        self.caught("env name the binary does not read (TLS_CA_PATH)", "prod", mutate, "env",
                    "prod: Deployment/gateway", "env sets TLS_CA_PATH", "`gateway` does not read")

    def test_env_of_another_subcommand(self):
        def mutate(objects):
            c = container(obj(objects, "Deployment", "catalog-svc"), "migrate", "initContainers")
            c["env"].append({"name": "NO_MIGRATE", "value": "true"})
        self.caught("env read by `serve` set on `migrate` (NO_MIGRATE)", "prod", mutate, "env",
                    "prod: Deployment/catalog-svc", "container migrate", "`catalog-svc migrate` does not read")

    def test_unknown_subcommand(self):
        def mutate(objects):
            container(obj(objects, "Deployment", "cache-svc"), "cache-svc")["args"] = ["server"]
        self.caught("unknown subcommand (cache-svc server)", "prod", mutate, "env",
                    "prod: Deployment/cache-svc", "runs cache-svc server, which is not one of its subcommands")

    # -- 4. Grace period

    def test_grace_shorter_than_prestop_plus_drain(self):
        def mutate(objects):
            obj(objects, "Deployment", "gateway")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 25
        self.caught("grace period 25 < preStop + drain", "prod", mutate, "grace",
                    "prod: Deployment/gateway", "terminationGracePeriodSeconds 25 is not greater")

    def test_prestop_longer(self):
        def mutate(objects):
            c = container(obj(objects, "Deployment", "cache-svc"), "cache-svc")
            grace = obj(objects, "Deployment", "cache-svc")["spec"]["template"]["spec"].get(
                "terminationGracePeriodSeconds", 30)
            c["lifecycle"]["preStop"]["sleep"]["seconds"] = grace
        self.caught("preStop sleep raised to the grace period", "dev", mutate, "grace",
                    "dev: Deployment/cache-svc", "is not greater than container cache-svc's preStop sleep")

    # -- 5. NetworkPolicies

    def test_netpol_pod_selector_typo(self):
        def mutate(objects):
            obj(objects, "NetworkPolicy", "catalog-svc")["spec"]["podSelector"]["matchLabels"][
                "app.kubernetes.io/name"] = "catalog-svcc"
        self.caught("NetworkPolicy podSelector typo (catalog-svcc)", "prod", mutate, "netpol",
                    "prod: NetworkPolicy/catalog-svc", "podSelector {app.kubernetes.io/name=catalog-svcc}")

    def test_netpol_peer_typo(self):
        def mutate(objects):
            for rule in obj(objects, "NetworkPolicy", "gateway")["spec"]["egress"]:
                for peer in rule.get("to") or []:
                    labels = (peer.get("podSelector") or {}).get("matchLabels") or {}
                    if labels.get("app.kubernetes.io/name") == "catalog-svc":
                        labels["app.kubernetes.io/name"] = "catalog_svc"
        self.caught("NetworkPolicy egress peer typo (catalog_svc)", "prod", mutate, "netpol",
                    "prod: NetworkPolicy/gateway", "egress[", "catalog_svc")

    def test_netpol_peer_typo_pinned_namespace(self):
        def mutate(objects):
            obj(objects, "NetworkPolicy", "cache-svc")["spec"]["ingress"][0]["from"].append({
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "learnhub"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "gatway"}}})
        self.caught("NetworkPolicy ingress peer typo, namespace pinned (gatway)", "dev", mutate, "netpol",
                    "dev: NetworkPolicy/cache-svc", "ingress[0].from", "gatway")

    def test_netpol_peer_in_other_namespace_not_checked(self):
        objects = copy.deepcopy(OVERLAYS["prod"])
        for rule in obj(objects, "NetworkPolicy", "gateway")["spec"]["egress"]:
            for peer in rule.get("to") or []:
                if "namespaceSelector" in peer and "podSelector" in peer:
                    peer["podSelector"]["matchLabels"]["k8s-app"] = "kube-dns-typo"
        new = set(cw.check_overlay("prod", objects, CTX)) - set(BASELINE["prod"])
        self.assertEqual(new, set(), "kube-system's pods are outside the render")

    # -- setup errors and the README rule

    def test_missing_binary_is_an_error(self):
        with tempfile.TemporaryDirectory() as empty:
            with self.assertRaisesRegex(cw.SetupError, "binary gateway not found in"):
                cw.load_binary("gateway", [Path(empty)])

    def test_readme_rule(self):
        text = ("Secrets `a-db`, `b-db` (key `DATABASE_URL`), `c` (`REDIS_URL`) in the `learnhub` namespace. "
                "- `d` and `e`, key `TOKEN`: x. certificates `x-tls` and `y-tls`, each with `tls.crt` "
                "(valid for it), `tls.key` and `ca.crt`. Put `observability` in `patches/x.yaml`.")
        self.assertEqual(cw.documented_secrets(text), {
            "a-db": {"DATABASE_URL"}, "b-db": {"DATABASE_URL"}, "c": {"REDIS_URL"},
            "d": {"TOKEN"}, "e": {"TOKEN"},
            "x-tls": {"tls.crt", "tls.key", "ca.crt"}, "y-tls": {"tls.crt", "tls.key", "ca.crt"}})


if __name__ == "__main__":
    unittest.main()
