"""The aws target's controller-side AWS calls against moto's server (the AWS APIs cannot run here;
moto's server answers them over HTTP as AWS does, from Debian's python3-moto in the s3 test image).

- inventories/aws (amazon.aws.aws_ec2): instances made through boto3 come out of
  `ansible-inventory --graph` in the groups their tags say, with their private address as ansible_host;
  an instance of another environment or a stopped one does not.
- The secrets role reads secrets_aws_secret_ids from Secrets Manager before any change: the values
  reach the host's secret files, never the output (-vvv); a missing id stops the run naming it.
"""
from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MOTO_IMAGE = "freshtrack-test/s3:local"
HOST_IMAGE = os.environ.get("FRESHTRACK_HOST_IMAGE", "freshtrack-test/debian12-systemd:local")
REGION = "eu-central-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def sh(*args, check=True):
    return subprocess.run(args, capture_output=True, text=True, check=check)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto():
    """moto's server on a port of the loopback, and boto3 clients of it."""
    import boto3  # noqa: PLC0415

    name, port = f"freshtrack-moto-{uuid.uuid4().hex[:8]}", free_port()
    sh("docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000", MOTO_IMAGE)
    url = f"http://127.0.0.1:{port}"
    try:
        clients = {
            service: boto3.client(service, endpoint_url=url, region_name=REGION,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")
            for service in ("ec2", "secretsmanager")}
        deadline = time.time() + 60
        while True:
            try:
                clients["ec2"].describe_regions()
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                assert time.time() < deadline, "moto's server did not start"
                time.sleep(0.5)
        yield {"url": url, **clients}
    finally:
        sh("docker", "rm", "-f", name, check=False)


def launch(ec2, name, tags, state="running"):
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tag_list = [{"Key": "Name", "Value": name}] + [{"Key": k, "Value": v} for k, v in tags.items()]
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t4g.small",
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": tag_list}])["Instances"][0]
    if state == "stopped":
        ec2.stop_instances(InstanceIds=[instance["InstanceId"]])
    return instance


def plain(value):
    """A value as `ansible-inventory --list` prints it: what came from outside is marked unsafe."""
    return value["__ansible_unsafe"] if isinstance(value, dict) and "__ansible_unsafe" in value else value


def test_ec2_instances_come_out_in_the_groups_their_tags_say(moto, tmp_path):
    ec2 = moto["ec2"]
    app1 = launch(ec2, "freshtrack-app-1", {"freshtrack_environment": "prod", "freshtrack_role": "app"})
    app2 = launch(ec2, "freshtrack-app-2", {"freshtrack_environment": "prod", "freshtrack_role": "app"})
    db = launch(ec2, "freshtrack-db-1", {"freshtrack_environment": "prod", "freshtrack_role": "db"})
    launch(ec2, "freshtrack-staging-1", {"freshtrack_environment": "staging", "freshtrack_role": "app"})
    launch(ec2, "freshtrack-old-1", {"freshtrack_environment": "prod", "freshtrack_role": "app"}, state="stopped")
    launch(ec2, "bastion", {"freshtrack_environment": "prod"})  # not a FreshTrack host: no role

    env = dict(os.environ, **CREDENTIALS, AWS_URL=moto["url"], ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
               ANSIBLE_INVENTORY_CACHE="false")
    run = subprocess.run(["ansible-inventory", "-i", "inventories/aws", "--graph"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    graph = run.stdout + run.stderr
    print(graph)
    listing = json.loads(subprocess.run(["ansible-inventory", "-i", "inventories/aws", "--list"], cwd=ROOT, env=env,
                                        capture_output=True, text=True, check=True).stdout)
    groups = {name: set(listing.get(name, {}).get("hosts", [])) for name in ("freshtrack", "app", "db")}
    assert groups == {"freshtrack": {"freshtrack-app-1", "freshtrack-app-2", "freshtrack-db-1"},
                      "app": {"freshtrack-app-1", "freshtrack-app-2"}, "db": {"freshtrack-db-1"}}, graph
    hostvars = listing["_meta"]["hostvars"]
    for name, instance in (("freshtrack-app-1", app1), ("freshtrack-app-2", app2), ("freshtrack-db-1", db)):
        assert plain(hostvars[name]["ansible_host"]) == instance["PrivateIpAddress"]
        assert plain(hostvars[name]["freshtrack_instance_id"]) == instance["InstanceId"]
        # The group's settings reach every host the plugin found.
        assert hostvars[name]["freshtrack_target"] == "aws"
    assert "bastion" not in hostvars and "freshtrack-staging-1" not in hostvars and "freshtrack-old-1" not in hostvars


@pytest.fixture(scope="module")
def host():
    """A plain container for the secrets role to write into (Ansible's docker connection)."""
    name = f"freshtrack-awssecrets-{uuid.uuid4().hex[:8]}"
    sh("docker", "run", "-d", "--name", name, HOST_IMAGE, "sleep", "infinity")
    try:
        yield name
    finally:
        sh("docker", "rm", "-f", name, check=False)


def run_secrets_role(host_name, tmp_path, moto_url, ids):
    playbook = tmp_path / "secrets.yml"
    playbook.write_text(json.dumps([{"name": "Secrets from AWS Secrets Manager", "hosts": "target", "gather_facts": False,
                                     "roles": [{"role": "freshtrack.deploy.secrets"}]}]))
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {"target": {
        "ansible_connection": "community.docker.docker", "ansible_host": host_name,
        "ansible_python_interpreter": "/usr/bin/python3",
        "freshtrack_target": "aws", "freshtrack_userns_remap": False, "secrets_dir": "/opt/freshtrack/secrets",
        "secrets_generated": {"jwt_secret": {"length": 32}, "redis_password": {"length": 32}},
        "secrets_supplied_required": ["database_password", "redis_password"],
        "secrets_aws_secret_ids": ids, "secrets_aws_region": REGION, "secrets_aws_endpoint_url": moto_url,
    }}}}))
    env = dict(os.environ, **CREDENTIALS, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    return subprocess.run(["ansible-playbook", "-vvv", "-i", str(inventory), str(playbook)], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)


def test_secrets_come_from_secrets_manager_and_are_never_shown(moto, host, tmp_path):
    sm = moto["secretsmanager"]
    values = {"database_password": f"rds-{uuid.uuid4().hex}", "redis_password": f"elasticache-{uuid.uuid4().hex}"}
    for name, value in values.items():
        sm.create_secret(Name=f"freshtrack/test/{name}", SecretString=value)
    ids = {name: f"freshtrack/test/{name}" for name in values}

    result = run_secrets_role(host, tmp_path, moto["url"], ids)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    for name, value in values.items():
        # Written as a supplied secret: root's, 0600 (the role's default owner), the value as it is in AWS.
        assert sh("docker", "exec", host, "cat", f"/opt/freshtrack/secrets/{name}").stdout == value
        assert sh("docker", "exec", host, "stat", "-c", "%U %a", f"/opt/freshtrack/secrets/{name}").stdout.split()[1] in ("600", "400")
        assert value not in output, f"{name}'s value appears in the -vvv output"
    # ElastiCache's token took the place of the generated Redis password; the rest were generated.
    assert sh("docker", "exec", host, "ls", "/opt/freshtrack/secrets").stdout.split() == ["database_password", "jwt_secret", "redis_password"]

    # A second run changes nothing.
    again = run_secrets_role(host, tmp_path, moto["url"], ids)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]


def test_a_missing_secret_id_stops_the_run_naming_it(moto, host, tmp_path):
    moto["secretsmanager"].create_secret(Name="freshtrack/test2/database_password", SecretString="present-value-123")
    before = sh("docker", "exec", host, "sh", "-c", "ls -l --time-style=+%s /opt/freshtrack/secrets 2>/dev/null || true").stdout
    ids = {"database_password": "freshtrack/test2/database_password", "redis_password": "freshtrack/test2/no-such-token"}
    result = run_secrets_role(host, tmp_path, moto["url"], ids)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "no value read from AWS Secrets Manager" in output and "'freshtrack/test2/no-such-token'" in output, output[-3000:]
    assert "present-value-123" not in output
    assert "changed=0" in result.stdout
    assert sh("docker", "exec", host, "sh", "-c", "ls -l --time-style=+%s /opt/freshtrack/secrets 2>/dev/null || true").stdout == before
