"""The region names preflight accepts for AWS and for DigitalOcean Spaces."""
from __future__ import annotations

import pytest

from ansible_collections.freshtrack.deploy.plugins.test.cloud_region import cloud_region


@pytest.mark.parametrize("value", ["eu-central-1", "us-east-1", "ap-southeast-2", "us-gov-west-1", "ca-central-1"])
def test_aws_regions(value):
    assert cloud_region(value)


@pytest.mark.parametrize("value", ["eu-centrl-1", "eu-central", "EU-CENTRAL-1", "fra1", "", None, "eu-central-1 ", "us-east-0"])
def test_not_aws_regions(value):
    assert not cloud_region(value)


@pytest.mark.parametrize("value,expected", [("fra1", True), ("nyc3", True), ("fra2", False), ("eu-central-1", False)])
def test_spaces_regions(value, expected):
    assert cloud_region(value, provider="spaces") is expected


def test_unknown_provider_is_an_error():
    with pytest.raises(ValueError, match="aws or spaces"):
        cloud_region("fra1", provider="gcp")
