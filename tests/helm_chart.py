"""helm/enclave rendered offline, as Helm itself renders it (helm-python-sdk embeds Helm's Go
library): on its own, with the two dependency charts switched off (they are not vendored here,
and Helm leaves out a missing dependency's templates without a word), or whole, with the
upstream charts of ../shared/charts copied under a temporary copy's charts/."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import helm_python
import yaml

CHART = Path(__file__).parents[1] / "helm" / "enclave"
UPSTREAM = Path(__file__).parents[2] / "shared" / "charts"
DEPENDENCY_CHARTS = {"jupyterhub": "jupyterhub-4.4.0", "dask-gateway": "dask-gateway-2026.3.0"}
INSTITUTION_VALUES = CHART / "examples" / "institution-values.yaml"
RELEASE = "enclave"
NAMESPACE = "tre"
DEPENDENCIES_OFF = {"jupyterhub": {"enabled": False}, "dask-gateway": {"enabled": False}}


def merged(base: dict, extra: dict) -> dict:
    """`base` with `extra` laid over it, mappings merged key by key."""
    result = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def institution_values(**overrides: Any) -> dict:
    """The example institution's values, with `overrides` laid over them."""
    return merged(yaml.safe_load(INSTITUTION_VALUES.read_text()), overrides)


def chart_values() -> dict:
    """The chart's own values.yaml (the defaults an install starts from)."""
    return yaml.safe_load((CHART / "values.yaml").read_text())


def render_templates(values: dict) -> dict[str, str]:
    """Each template's rendered text, by template path."""
    chart = helm_python.Chart.load(CHART)
    return chart.render(
        merged(values, DEPENDENCIES_OFF), name=RELEASE, namespace=NAMESPACE, is_install=True
    )


def render(values: dict) -> list[dict]:
    """Every object the chart's own templates make."""
    return objects(render_templates(values))


def objects(rendered: dict[str, str]) -> list[dict]:
    """The objects of rendered templates (not their notes)."""
    manifests = []
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            manifests += [doc for doc in yaml.safe_load_all(text) if doc]
    return manifests


def whole_chart(folder: Path) -> Path:
    """A copy of the chart in `folder`, with its dependencies under its charts/."""
    chart = folder / "enclave"
    shutil.copytree(CHART, chart)
    for name, upstream in DEPENDENCY_CHARTS.items():
        shutil.copytree(UPSTREAM / upstream, chart / "charts" / name)
    return chart


def render_whole(chart: Path, values: dict, release: str = RELEASE) -> list[dict]:
    """Every object of the chart and its dependencies (a `whole_chart`)."""
    rendered = helm_python.Chart.load(chart).render(
        values, name=release, namespace=NAMESPACE, is_install=True
    )
    return objects(rendered)


def of_kind(manifests: list[dict], kind: str) -> list[dict]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[dict], kind: str, name: str) -> dict:
    (found,) = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    return found
