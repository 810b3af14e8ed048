"""The deployment files in deploy/: Kubernetes objects that a cluster would
take, and that fit together.

Every YAML document under deploy/kubernetes is parsed with PyYAML and
validated against the Kubernetes API's own schemas (kubernetes-validate's
bundled, strict ones, for KUBERNETES_VERSION: unknown fields are errors),
offline. Custom resources are not in those schemas: a
NetworkAttachmentDefinition is validated against NAD_SCHEMA below, and its
spec.config must pass docknet-cni's own configuration parser. Then the
cross-references a schema cannot see: Services select a Deployment's pods
on ports its containers have, the names the mesh's services call each other
by are Services, the commands parse with the programs' own argument parsers,
and the master and the pods on DockNet share the run directory.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError
from kubernetes_validate.utils import ValidationError as SchemaError
import pytest
import yaml

from aiodocknet.cli.main import _parser as docknet_parser
from aiodocknet.cni import install
from aiodocknet.cni.config import parse_config
from aiodocknet.control import DEFAULT_RUN_DIR
from services import run as services_run
from services.mesh import DEPENDS, PORT, SERVICES

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
PODMAN = ROOT / "deploy" / "podman"
# The newest release whose schemas kubernetes-validate 1.37 bundles.
KUBERNETES_VERSION = "1.37.0"
IMAGE = "registry.example.com/docknet:0.1.0"
NETWORKS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
MASTER = ("docknet-system", "docknet-master")
MESH_NAMESPACE = "docknet-mesh"

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# Multus's CRD (k8s.cni.cncf.io/v1): spec.config is a CNI configuration as
# a JSON string; its contents are checked by docknet-cni's parser.
NAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "k8s.cni.cncf.io/v1"},
        "kind": {"const": "NetworkAttachmentDefinition"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": _DNS_LABEL},
                "namespace": {"type": "string", "pattern": _DNS_LABEL},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "required": ["config"],
            "properties": {"config": {"type": "string", "minLength": 2}},
            "additionalProperties": False,
        },
    },
}
CUSTOM_SCHEMAS = {("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition"): NAD_SCHEMA}

Doc = dict[str, Any]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML
    keeps the last silently, and so does the API server, so a duplicated
    key in a manifest is an edit lost without a word."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _load() -> list[tuple[str, Doc]]:
    out = []
    for path in sorted(KUBERNETES.rglob("*.y*ml")):
        for i, doc in enumerate(yaml.load_all(path.read_text(), Loader=_StrictLoader)):
            if doc is not None:
                out.append((f"{path.relative_to(ROOT)}#{i}", doc))
    return out


DOCUMENTS = _load()


def _id(item: tuple[str, Doc]) -> str:
    where, doc = item
    return f"{where}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def _of_kind(kind: str) -> list[Doc]:
    return [d for _, d in DOCUMENTS if d.get("kind") == kind]


def _key(doc: Doc) -> tuple[str, str]:
    return doc["metadata"].get("namespace", ""), doc["metadata"]["name"]


def _workloads() -> list[Doc]:
    return [d for _, d in DOCUMENTS if d.get("kind") in ("Deployment", "DaemonSet", "StatefulSet", "Job")]


def _pod(workload: Doc) -> Doc:
    return workload["spec"]["template"]


def _containers(pod: Doc, init: bool = False) -> list[Doc]:
    spec = pod["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def _host_path_mounts(pod: Doc, container: Doc) -> dict[str, str]:
    """mountPath -> the hostPath behind it, for one container."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    out = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            out[mount["mountPath"]] = volume["hostPath"]["path"]
    return out


def _cni_config(doc: Doc) -> Doc:
    return json.loads(doc["spec"]["config"])


def _docknet_plugins(conf: Doc) -> list[Doc]:
    """The docknet-cni configurations a runtime would hand the plugin: a
    conflist's entries get its cniVersion and name, as libcni does."""
    if "plugins" not in conf:
        return [conf] if conf.get("type") == install.PLUGIN else []
    return [dict(p, cniVersion=conf["cniVersion"], name=conf["name"])
            for p in conf["plugins"] if p.get("type") == install.PLUGIN]


# ---- each object on its own ----


def test_the_manifests_are_there() -> None:
    kinds = {d["kind"] for _, d in DOCUMENTS}
    assert {"Namespace", "ServiceAccount", "DaemonSet", "NetworkAttachmentDefinition", "Deployment",
            "Service"} <= kinds


@pytest.mark.parametrize("item", DOCUMENTS, ids=_id)
def test_object_is_valid_against_the_api_schema(item: tuple[str, Doc]) -> None:
    _, doc = item
    custom = CUSTOM_SCHEMAS.get((doc.get("apiVersion"), doc.get("kind")))
    if custom is not None:
        jsonschema.validate(doc, custom)
        return
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except SchemaNotFoundError:
        pytest.fail(f"{doc.get('apiVersion')} {doc.get('kind')} is neither a Kubernetes {KUBERNETES_VERSION} "
                    "type nor in CUSTOM_SCHEMAS")
    except SchemaError as exc:
        pytest.fail(f"not a valid {doc['kind']}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_network_attachment_config_passes_the_plugins_parser() -> None:
    nads = _of_kind("NetworkAttachmentDefinition")
    assert nads
    for nad in nads:
        conf = _cni_config(nad)
        plugins = _docknet_plugins(conf)
        assert plugins, f"{nad['metadata']['name']}: no {install.PLUGIN} in its config"
        for plugin in plugins:
            parsed = parse_config(json.dumps(plugin).encode(), "ADD")
            assert parsed.name == nad["metadata"]["name"]
            assert parsed.run_dir == DEFAULT_RUN_DIR


def test_every_image_is_the_placeholder_the_readme_explains() -> None:
    images = {c["image"] for w in _workloads() for c in _containers(_pod(w), init=True)}
    assert images == {IMAGE}
    assert IMAGE in (KUBERNETES / "README.md").read_text()
    assert IMAGE in (ROOT / "deploy" / "Containerfile").read_text()


def test_namespaced_objects_are_in_namespaces_the_manifests_make() -> None:
    namespaces = {d["metadata"]["name"] for d in _of_kind("Namespace")}
    for _, doc in DOCUMENTS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in namespaces, _id(("", doc))


# ---- the master ----


def _master() -> Doc:
    (ds,) = [d for d in _of_kind("DaemonSet") if _key(d) == MASTER]
    return ds


def test_master_runs_in_the_hosts_namespaces_and_may_open_other_pods() -> None:
    ds = _master()
    spec = _pod(ds)["spec"]
    assert spec["hostNetwork"] is True and spec["hostPID"] is True
    (master,) = _containers(_pod(ds))
    assert master["securityContext"]["privileged"] is True
    assert master["command"][:2] == ["docknet", "master"]
    args = docknet_parser().parse_args(master["command"][1:])
    assert args.run_dir == DEFAULT_RUN_DIR
    accounts = {_key(a) for a in _of_kind("ServiceAccount")}
    assert (ds["metadata"]["namespace"], spec["serviceAccountName"]) in accounts


def test_master_has_hugepages_as_kubernetes_grants_them() -> None:
    pod = _pod(_master())
    (master,) = _containers(pod)
    res = master["resources"]
    # Kubernetes refuses hugepages whose request differs from the limit.
    assert res["requests"]["hugepages-2Mi"] == res["limits"]["hugepages-2Mi"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in master["volumeMounts"]}
    assert mounted["/dev/hugepages"]["emptyDir"]["medium"] == "HugePages"


def test_master_probes_ask_the_master() -> None:
    (master,) = _containers(_pod(_master()))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = master[probe]["exec"]["command"]
        assert command[0] == "docknet"
        args = docknet_parser().parse_args(command[1:])
        assert (args.command, args.action) == ("master", "status")


def test_init_container_installs_the_plugin_on_the_node() -> None:
    pod = _pod(_master())
    (init,) = pod["spec"]["initContainers"]
    script = "\n".join(init["command"][2:] + init.get("args", [])) if init["command"][0] == "/bin/sh" \
        else shlex.join(init["command"])
    (line,) = [ln.strip() for ln in script.splitlines() if ln.strip().startswith("docknet cni install")]
    args = docknet_parser().parse_args(shlex.split(line)[1:])
    assert args.action == "install" and not args.force
    mounts = _host_path_mounts(pod, init)
    # What it writes lands in the node's directories runtimes read.
    assert mounts[args.bin_dir] == "/opt/cni/bin"
    assert mounts[args.conf_dir] == "/etc/cni/net.d"
    assert args.run_dir == DEFAULT_RUN_DIR


# ---- the pods on DockNet ----


def _docknet_pods() -> list[tuple[Doc, Doc]]:
    return [(w, _pod(w)) for w in _workloads()
            if NETWORKS_ANNOTATION in _pod(w)["metadata"].get("annotations", {})]


def test_the_run_directory_is_one_on_the_node() -> None:
    """The master's sockets are where every pod on DockNet looks, and where
    the plugin's configuration says."""
    pod = _pod(_master())
    (master,) = _containers(pod)
    assert _host_path_mounts(pod, master)[DEFAULT_RUN_DIR] == DEFAULT_RUN_DIR
    pods = _docknet_pods()
    assert {w["metadata"]["name"] for w, _ in pods} >= set(SERVICES)
    for workload, pod in pods:
        for container in _containers(pod):
            assert _host_path_mounts(pod, container).get(DEFAULT_RUN_DIR) == DEFAULT_RUN_DIR, \
                f"{workload['metadata']['name']}/{container['name']} does not mount {DEFAULT_RUN_DIR}"
    for nad in _of_kind("NetworkAttachmentDefinition"):
        for plugin in _docknet_plugins(_cni_config(nad)):
            assert plugin.get("runDir", DEFAULT_RUN_DIR) == DEFAULT_RUN_DIR


def test_pods_ask_for_a_network_that_exists() -> None:
    nads = {_key(n) for n in _of_kind("NetworkAttachmentDefinition")}
    for workload, pod in _docknet_pods():
        for ref in pod["metadata"]["annotations"][NETWORKS_ANNOTATION].split(","):
            namespace, _, name = ref.strip().rpartition("/")
            assert (namespace or workload["metadata"]["namespace"], name.split("@")[0]) in nads, ref


def _mesh_deployment(name: str) -> Doc:
    (dep,) = [d for d in _of_kind("Deployment") if _key(d) == (MESH_NAMESPACE, name)]
    return dep


@pytest.mark.parametrize("name", SERVICES)
def test_mesh_service_runs_as_the_mesh_demo_does(name: str) -> None:
    (container,) = _containers(_pod(_mesh_deployment(name)))
    command = container["command"]
    assert command[:3] == ["python", "-m", "services.run"]
    args = services_run.parse_args(command[3:])
    assert (args.service, args.loop) == (name, "docknet")
    ports = {p["containerPort"] for p in container["ports"]}
    assert args.port in ports
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("DOCKNET_REQUIRE") == "1"


def test_every_service_selects_a_deployments_pods_on_its_ports() -> None:
    deployments = _of_kind("Deployment")
    services = _of_kind("Service")
    assert services
    for svc in services:
        where = f"Service {svc['metadata']['name']}"
        selector = svc["spec"]["selector"]
        chosen = [d for d in deployments
                  if d["metadata"]["namespace"] == svc["metadata"]["namespace"]
                  and selector.items() <= _pod(d)["metadata"]["labels"].items()]
        assert len(chosen) == 1, f"{where} selects {len(chosen)} Deployments"
        (dep,) = chosen
        assert dep["spec"]["selector"]["matchLabels"].items() <= _pod(dep)["metadata"]["labels"].items()
        assert svc["spec"].get("clusterIP") == "None", f"{where} is not headless"
        container_ports = [p for c in _containers(_pod(dep)) for p in c.get("ports", [])]
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            match = [p for p in container_ports
                     if (p.get("name") == target if isinstance(target, str) else p["containerPort"] == target)]
            assert match, f"{where} port {port['port']} -> {target!r}: no such container port"
            assert match[0].get("protocol", "TCP") == port.get("protocol", "TCP")


def _names_called() -> set[str]:
    """Every service name services/*.py passes to Upstreams.get_json or
    post_json, read from the source."""
    names = set()
    for path in (ROOT / "services").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("get_json", "post_json") and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
    return names


def test_the_names_services_call_each_other_by_are_services() -> None:
    called = _names_called()
    assert called == {d for deps in DEPENDS.values() for d in deps}
    services = {_key(s): s for s in _of_kind("Service")}
    for name in called | set(SERVICES):
        svc = services.get((MESH_NAMESPACE, name))
        assert svc is not None, f"the mesh calls {name!r}: no Service of that name in {MESH_NAMESPACE}"
        # Upstreams' default URL is http://NAME:PORT.
        assert PORT in {p["port"] for p in svc["spec"]["ports"]}


def test_the_load_generator_calls_the_frontends_service() -> None:
    from urllib.parse import urlsplit

    services = {_key(s) for s in _of_kind("Service")}
    for job in _of_kind("Job"):
        (container,) = _containers(_pod(job))
        command = container["command"]
        url = urlsplit(command[command.index("--url") + 1])
        assert (job["metadata"]["namespace"], url.hostname) in services
        assert url.port == PORT


def test_containerfile_copies_what_exists() -> None:
    """Every COPY source of deploy/Containerfile (the build context is the
    repository) is there, services/ among them."""
    sources = []
    for line in (ROOT / "deploy" / "Containerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += words[1:-1]
    assert "services" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_image_installs_the_dpdk_libraries_the_native_module_links() -> None:
    """Debian names the package of librte_X.so.N librte-X{N}: each one the
    built module needs is in the Containerfile's runtime stage."""
    import subprocess

    import aiodocknet.native._lib as native

    linked = subprocess.run(["ldd", native.__file__], capture_output=True, text=True, check=True).stdout
    sonames = set(re.findall(r"\blibrte_([a-z0-9_]+)\.so\.(\d+)", linked))
    assert sonames, linked
    text = (ROOT / "deploy" / "Containerfile").read_text()
    runtime = text[text.rindex("\nFROM "):]
    for name, major in sorted(sonames):
        package = f"librte-{name.replace('_', '-')}{major}"
        assert re.search(rf"\b{re.escape(package)}\b", runtime), f"the image lacks {package}"


# ---- the Podman example ----


def test_podman_conflist_chains_docknet_after_bridge() -> None:
    (path,) = PODMAN.glob("*.conflist")
    conf = json.loads(path.read_text())
    types = [p["type"] for p in conf["plugins"]]
    assert types == ["bridge", install.PLUGIN], "DockNet comes after the kernel interface"
    (plugin,) = _docknet_plugins(conf)
    assert parse_config(json.dumps(plugin).encode(), "ADD").run_dir == DEFAULT_RUN_DIR
