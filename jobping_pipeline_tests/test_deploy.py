"""The Kubernetes deployment files load against Dagster's own config schemas (nothing here runs
Kubernetes: the K8sRunLauncher's config schema and tag parser come from dagster-k8s)."""

import json
from pathlib import Path

import yaml

# Dagster has no public API that validates an instance config without instantiating it (which
# would need a Kubernetes cluster and a Postgres): the schema and its validator are internal.
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_user_defined_k8s_config

from jobping_pipeline.definitions import EMBED_JOB, K8S_CONFIG_TAG, build_definitions
from jobping_pipeline.settings import load_settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_kubernetes_instance_config_is_valid(monkeypatch):
    for variable in ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_DB"):
        monkeypatch.setenv(variable, "set-by-the-chart")
    config = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    launcher_result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert launcher_result.success, launcher_result.errors
    assert config["concurrency"]["pools"]["granularity"] == "run"
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["max_resume_run_attempts"] == 0


def test_the_local_instance_monitors_runs():
    config = yaml.safe_load((DEPLOY.parent / "dagster.yaml").read_text())
    result = process_config(dagster_instance_config_schema(), config)
    assert result.success, result.errors
    monitoring = config["run_monitoring"]
    assert monitoring["enabled"] and monitoring["start_timeout_seconds"] and monitoring["cancel_timeout_seconds"]


def test_a_broken_instance_config_is_caught():
    config = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    config["run_launcher"]["config"]["job_namespace"] = ["not", "a", "string"]
    assert not process_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"]).success


def test_embedding_runs_request_their_gpu_through_the_k8s_tag():
    definitions = build_definitions(load_settings({"JOBPING_K8S_GPUS": "2"}))
    tags = definitions.resolve_job_def(EMBED_JOB).tags
    k8s_config = get_user_defined_k8s_config(tags)
    assert isinstance(k8s_config, UserDefinedDagsterK8sConfig)
    assert k8s_config.container_config["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert K8S_CONFIG_TAG not in build_definitions(load_settings({})).resolve_job_def(EMBED_JOB).tags
    json.loads(tags[K8S_CONFIG_TAG])


def test_helm_values_name_the_chart_keys_this_project_relies_on():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["concurrency"]["pools"] == {"defaultLimit": 4, "granularity": "run"}
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "jobping_pipeline"]
    assert {"name": "JOBPING_K8S_GPUS", "value": "1"} in deployment["env"]
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
