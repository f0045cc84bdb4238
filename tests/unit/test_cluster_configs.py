"""cluster/: the Ray cluster-launcher configs pass Ray's own validation, the KubeRay manifests have
the fields KubeRay requires for their kind, and the Serve config they run builds fabray's app.

No cluster is started: Ray's `prepare_config` + `validate_config` (the JSON schema bundled in the
wheel, plus its own checks) are what `ray up` runs before it launches anything.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
LAUNCHER = {
    "phase1.yaml": {"min": 1, "max": 1},
    "phase2-dev.yaml": {"min": 1, "max": 1},
    "phase2-prod.yaml": {"min": 1, "max": 1},
    "phase3.yaml": {"min": 1, "max": 2},
}
ON_PREM = "phase1-onprem.yaml"
GPU_TYPE = "gpu_h100"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _prepared(name: str) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(copy.deepcopy(_load(CLUSTER / name)))
    validate_config(config)
    return config


# ---------------------------------------------------------------------------- ray up configs


def test_every_launcher_config_in_cluster_is_covered():
    found = {p.name for p in CLUSTER.glob("*.yaml")} - {"serve.yaml"}
    assert found == set(LAUNCHER) | {ON_PREM}


@pytest.mark.parametrize("name", [*LAUNCHER, ON_PREM])
def test_launcher_config_passes_rays_validation(name):
    config = _prepared(name)
    assert config["cluster_name"].startswith("fabray")


def test_rays_validation_is_not_a_rubber_stamp():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    fractional = copy.deepcopy(_load(CLUSTER / "phase3.yaml"))
    fractional["available_node_types"][GPU_TYPE]["resources"]["GPU"] = 0.5  # must be an integer
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(fractional))
    too_few = copy.deepcopy(_load(CLUSTER / "phase3.yaml"))
    too_few["max_workers"] = 0  # below the GPU type's min_workers
    with pytest.raises(ValueError, match="max_workers"):
        validate_config(prepare_config(too_few))


@pytest.mark.parametrize("name, expected", LAUNCHER.items())
def test_gpu_worker_type_per_phase(name, expected):
    config = _prepared(name)
    head = config["available_node_types"][config["head_node_type"]]
    gpu = config["available_node_types"][GPU_TYPE]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] == 0
    assert gpu["resources"]["GPU"] == 1  # one H100 per worker node
    assert (gpu["min_workers"], gpu["max_workers"]) == (expected["min"], expected["max"])
    assert config["max_workers"] == expected["max"]
    assert "--num-cpus=0" in " ".join(config["head_start_ray_commands"])


def test_phase3_idle_timeout_is_the_same_for_both_autoscaler_versions():
    config = _prepared("phase3.yaml")
    assert config["available_node_types"][GPU_TYPE]["idle_timeout_s"] == 60 * config["idle_timeout_minutes"]


def test_phase2_is_two_clusters_and_phase3_grows_production_in_place():
    names = {n: _load(CLUSTER / n)["cluster_name"] for n in LAUNCHER}
    assert names["phase2-dev.yaml"] != names["phase2-prod.yaml"]
    assert names["phase3.yaml"] == names["phase2-prod.yaml"]


@pytest.mark.parametrize("name", [*LAUNCHER, ON_PREM])
def test_setup_commands_install_fabray_and_nothing_else_of_rays_defaults(name):
    config = _prepared(name)
    assert config["file_mounts"]["~/fabray"] == "."  # `ray up` runs from the repository root
    assert (REPO / "pyproject.toml").is_file()
    for key in ("head_setup_commands", "worker_setup_commands"):
        commands = " && ".join(config[key])
        assert "pip install -q -e ~/fabray" in commands, key
        assert "ray-wheels" not in commands and "anaconda3" not in commands, key  # Ray's defaults
    assert 'tensorflow[and-cuda]==2.21.*' in " ".join(config["worker_setup_commands"])
    env_line = next(c for c in config["setup_commands"] if "TF_FORCE_GPU_ALLOW_GROWTH" in c)
    assert "RAY_AUTH_MODE=token" in env_line


# ---------------------------------------------------------------------------- KubeRay


def _check_pod_template(template: dict[str, Any], where: str) -> list[dict[str, Any]]:
    containers = template["spec"]["containers"]
    assert containers, where
    for c in containers:
        assert c["name"] and c["image"], where
    return containers


def _check_ray_cluster_spec(spec: dict[str, Any], where: str) -> None:
    """The fields KubeRay's RayCluster spec requires (and types it enforces)."""
    import ray

    assert spec["rayVersion"] == ray.__version__, where
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict), where
    for params in [head["rayStartParams"], *(g["rayStartParams"] for g in spec.get("workerGroupSpecs", []))]:
        assert all(isinstance(v, str) for v in params.values()), f"{where}: rayStartParams values are strings"
    head_containers = _check_pod_template(head["template"], where)
    assert "nvidia.com/gpu" not in head_containers[0]["resources"]["limits"], where
    groups = spec["workerGroupSpecs"]
    assert groups, where
    for group in groups:
        assert group["groupName"], where
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], where
        (container,) = _check_pod_template(group["template"], where)
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1", where
        assert container["resources"]["requests"] == container["resources"]["limits"], where
    claims = {v["persistentVolumeClaim"]["claimName"] for v in head["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {_load(KUBERAY / "storage.yaml")["metadata"]["name"]}, where


def _header(doc: dict[str, Any], kind: str) -> None:
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == kind
    assert doc["metadata"]["name"]


def test_raycluster_manifest():
    doc = _load(KUBERAY / "raycluster.yaml")
    _header(doc, "RayCluster")
    _check_ray_cluster_spec(doc["spec"], "raycluster.yaml")
    (gpu,) = doc["spec"]["workerGroupSpecs"]
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (1, 2)  # Phase 3: 1 → 2 H100 pods
    assert doc["spec"]["enableInTreeAutoscaling"] is True
    assert doc["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] == 60 * _load(CLUSTER / "phase3.yaml")["idle_timeout_minutes"]


def test_rayservice_manifest_runs_the_serve_config():
    doc = _load(KUBERAY / "rayservice.yaml")
    _header(doc, "RayService")
    _check_ray_cluster_spec(doc["spec"]["rayClusterConfig"], "rayservice.yaml")
    serve_config = yaml.safe_load(doc["spec"]["serveConfigV2"])  # a YAML document in a string
    (app,) = serve_config["applications"]
    reference = _load(CLUSTER / "serve.yaml")
    (ref_app,) = reference["applications"]
    assert app["import_path"] == ref_app["import_path"]
    assert app["deployments"] == ref_app["deployments"]
    assert set(app["args"]) == set(ref_app["args"])
    assert {k: v for k, v in app["args"]["serve"].items() if k != "api_token_file"} == \
        {k: v for k, v in ref_app["args"]["serve"].items() if k != "api_token_file"}
    # the token file is the mounted Secret
    token_dir = str(Path(app["args"]["serve"]["api_token_file"]).parent)
    mounts = doc["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert token_dir in {m["mountPath"] for m in mounts}


def test_serve_config_is_valid_for_serve_and_its_import_path_builds_the_app(make_run, tmp_path):
    """Both Serve configs (serve.yaml and the RayService's) validate against Ray's ServeDeploySchema,
    and the builder they name, given their args with /fabray moved to a temp dir and a finished
    run there, returns a Serve Application."""
    import json

    from ray.serve import Application
    from ray.serve._private.utils import import_attr
    from ray.serve.schema import ServeDeploySchema

    service = yaml.safe_load(_load(KUBERAY / "rayservice.yaml")["spec"]["serveConfigV2"])
    for config in (service, _load(CLUSTER / "serve.yaml")):
        ServeDeploySchema.model_validate(config)
    (app,) = service["applications"]
    args = json.loads(json.dumps(app["args"]).replace("/fabray/", f"{tmp_path}/").replace(
        "/etc/fabray/", f"{tmp_path}/etc/"))
    make_run(args["run"], {"rule": {"status": "ok", "params": 1}},
             files={"models/rule/model.keras": b"not loaded at build time"})
    Path(args["config"]).write_text("{}\n")
    builder = import_attr(app["import_path"])
    application = builder(args)
    assert isinstance(application, Application)
    # every deployment the application binds is configured, with its resources (issue 13 item 7)
    from ray.serve._private.build_app import build_app as built_deployments

    bound = {d.name for d in built_deployments(application, name=app["name"]).deployments}
    configured = {d["name"]: d for d in app["deployments"]}
    assert set(configured) == bound
    assert all("num_cpus" in d["ray_actor_options"] for d in configured.values())
    assert configured["BatchScorer"]["ray_actor_options"]["num_cpus"] == args["serve"]["batch_num_cpus"]
    assert configured["Predictor"]["ray_actor_options"]["num_cpus"] == args["serve"]["predictor_num_cpus"]


def test_rayjob_manifest_runs_the_retrain_within_the_seeds_two_hours():
    doc = _load(KUBERAY / "rayjob-retrain.yaml")
    _header(doc, "RayJob")
    spec = doc["spec"]
    _check_ray_cluster_spec(spec["rayClusterSpec"], "rayjob-retrain.yaml")
    assert spec["activeDeadlineSeconds"] == 2 * 3600
    assert spec["shutdownAfterJobFinishes"] is True
    words = shlex.split(spec["entrypoint"])
    # the daily retrain lands: retrain the live version, evaluate, promote if not worse (issue 15)
    assert words[:3] == ["python", "-m", "fabray.serve.retrain"]
    flags = {w for w in words if w.startswith("--")}
    assert flags == {"--store", "--data", "--config"}
    from fabray.serve.retrain import main

    with pytest.raises(SystemExit) as help_exit:  # the entrypoint's flags are the module's own
        main(["--help"])
    assert help_exit.value.code == 0
    rayservice = _load(KUBERAY / "rayservice.yaml")
    assert words[words.index("--store") + 1] in yaml.safe_dump(rayservice)  # the serving app's store


def test_cronjob_submits_a_dated_copy_of_the_rayjob(tmp_path):
    docs = {d["kind"]: d for d in yaml.safe_load_all((KUBERAY / "retrain-cronjob.yaml").read_text())}
    assert set(docs) == {"ServiceAccount", "Role", "RoleBinding", "CronJob"}
    cron = docs["CronJob"]
    assert len(cron["spec"]["schedule"].split()) == 5
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
    rule = docs["Role"]["rules"][0]
    assert rule["apiGroups"] == ["ray.io"] and "create" in rule["verbs"] and rule["resources"] == ["rayjobs"]
    # Run the pod's command here, with `cat` standing in for `kubectl create -f -`.
    (container,) = pod["containers"]
    script = container["args"][0]
    mount = container["volumeMounts"][0]["mountPath"]
    script = script.replace(f"{mount}/rayjob-retrain.yaml", str(KUBERAY / "rayjob-retrain.yaml"))
    script = script.replace("kubectl create -f -", "cat")
    out = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, check=True).stdout
    job = yaml.safe_load(out)
    today = datetime.now(timezone.utc).strftime("%Y%m%d")
    assert job["kind"] == "RayJob"
    assert re.fullmatch(r"fabray-retrain-\d{8}", job["metadata"]["name"])
    assert job["metadata"]["name"][-8:] in {today, str(int(today) + 1)}  # around midnight UTC
    assert job["spec"] == _load(KUBERAY / "rayjob-retrain.yaml")["spec"]


def test_images_and_ray_versions_agree_with_the_dockerfile():
    import ray

    dockerfile = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM rayproject/ray:(\S+)", dockerfile, re.M).group(1)
    assert base.startswith(f"{ray.__version__}-py311")
    images = set()
    for name in ("raycluster.yaml", "rayservice.yaml", "rayjob-retrain.yaml"):
        text = (KUBERAY / name).read_text()
        images |= set(re.findall(r"image: (\S+)", text))
    assert len(images) == 1  # one fabray image everywhere
