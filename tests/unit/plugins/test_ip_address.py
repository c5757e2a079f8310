"""The ip_address test: literal addresses (and networks when asked), never host names."""
from __future__ import annotations

import pytest

from ansible_collections.freshtrack.deploy.plugins.test.ip_address import TestModule

ip_address = TestModule().tests()["ip_address"]


@pytest.mark.parametrize("value", ["127.0.0.1", "0.0.0.0", "10.1.2.3", "::1", "fd00::5"])
def test_addresses(value):
    assert ip_address(value)
    assert ip_address(value, network=True)


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1:9090", "10.0.0.300", "", " 127.0.0.1", None, 3232235777,
                                   "10.0.0.0/8", "1.2.3"])
def test_not_addresses(value):
    assert not ip_address(value)


@pytest.mark.parametrize("value", ["10.0.0.0/8", "192.168.1.7/24", "fd00::/64"])
def test_networks_only_when_asked(value):
    assert ip_address(value, network=True)


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.300/24", "fd00::/129", "any", "10.0.0.0/"])
def test_bad_networks(value):
    assert not ip_address(value, network=True)


@pytest.mark.parametrize("value, strict_ok", [("172.23.255.0/24", True), ("172.23.255.5/24", False),
                                              ("10.0.0.0/8", True), ("172.23.255.0", False), ("fd00::/64", True)])
def test_strict_networks_have_no_host_bits_as_docker_requires(value, strict_ok):
    assert ip_address(value, network=True, strict=True) is strict_ok
    assert ip_address(value, network=True) is True
