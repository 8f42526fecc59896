"""Dependabot keeps the Python dependencies, the actions and the base image current."""

from typing import Any

from tests.ci import pipeline


def test_dependabot_watches_python_actions_and_the_base_image() -> None:
    assert pipeline.dependabot_problems(pipeline.load_yaml(pipeline.DEPENDABOT)) == []


def test_dependabot_check_notices_the_base_image_left_out() -> None:
    config: dict[str, Any] = pipeline.load_yaml(pipeline.DEPENDABOT)
    config["updates"] = [u for u in config["updates"] if u["package-ecosystem"] != "docker"]

    assert pipeline.dependabot_problems(config) == ["docker is not watched"]
