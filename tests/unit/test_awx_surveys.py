"""The AWX surveys: generated from where each variable is documented, up to date, and asking only
for variables the job template's playbook reads; the job-template playbook uses every one."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "lib"))
import awx_surveys  # noqa: E402

WANTED = yaml.safe_load((ROOT / "awx" / "surveys.yml").read_text())
SURVEYS = {path.stem: json.loads(path.read_text()) for path in (ROOT / "awx" / "surveys").glob("*.json")}


def test_surveys_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lib" / "awx_surveys.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert set(SURVEYS) == set(WANTED)


def _reads(playbook: str, variable: str) -> bool:
    """The playbook, or a role it includes, reads the variable (a Jinja expression or a default)."""
    text = (ROOT / playbook).read_text()
    roles = {line.split("freshtrack.deploy.")[1].split()[0].strip("\"'") for line in text.splitlines()
             if "freshtrack.deploy." in line and "{{" not in line.split("freshtrack.deploy.")[1][:3]}
    if playbook == "playbooks/rollback.yml":  # it imports deploy.yml
        return _reads("playbooks/deploy.yml", variable)
    sources = [text] + [p.read_text() for role in roles if (ROOT / "roles" / role).is_dir()
                        for p in [*(ROOT / "roles" / role).glob("tasks/*.yml"), *(ROOT / "roles" / role).glob("defaults/*.yml")]]
    return any(variable in source for source in sources)


@pytest.mark.parametrize("name", sorted(WANTED))
def test_every_question_is_a_variable_its_playbook_reads(name):
    playbook = WANTED[name]["playbook"]
    assert (ROOT / playbook).is_file()
    for question in SURVEYS[name]["spec"]:
        assert _reads(playbook, question["variable"]), f"{playbook} does not read {question['variable']}"


@pytest.mark.parametrize("name", sorted(WANTED))
def test_answers_match_the_documented_type_and_choices(name):
    for entry, question in zip(WANTED[name]["questions"], SURVEYS[name]["spec"]):
        option = awx_surveys.documentation(entry)
        if option.get("type") == "bool":
            assert question["type"] == "multiplechoice" and question["choices"] == ["false", "true"]
        elif option.get("choices"):
            assert question["choices"] == [str(c) for c in option["choices"]]
            assert question["default"] in question["choices"]
        else:
            assert question["type"] in ("text", "password", "integer", "float")
        assert question["question_description"], question["variable"]
        assert isinstance(question["default"], str)  # AWX sends answers as strings


def test_the_job_template_playbook_gives_every_survey_and_playbook_to_awx():
    playbook = (ROOT / "awx" / "job_templates.yml").read_text()
    assert "surveys.yml" in playbook and "'/surveys/' ~ item.name ~ '.json'" in playbook
    assert "'playbook': 'site.yml'" in playbook


def test_a_misnamed_variable_fails_generation():
    with pytest.raises(LookupError, match="deploy_imag"):
        awx_surveys.documentation({"variable": "deploy_imag", "documented_by": {"role": "deploy", "entry_point": "begin"}})
