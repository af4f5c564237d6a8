"""docker-compose.yml wires the proxy the way tests/deploy/test_replicas.py runs it (Docker cannot run here)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_one_published_port_on_the_proxy_and_scalable_replicas() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app, proxy = compose["services"]["brushprint"], compose["services"]["proxy"]
    assert "ports" not in app, "a published port on the replicas breaks --scale"
    assert app["expose"] == ["8000"]
    assert proxy["image"].startswith("haproxy:") and len(proxy["ports"]) == 1
    assert proxy["ports"][0].endswith(":8000")
    assert "./deploy/haproxy:/usr/local/etc/haproxy:ro" in proxy["volumes"]
    cfgs = [a for a in proxy["command"] if a.endswith(".cfg")]
    assert [Path(c).name for c in cfgs] == ["haproxy.cfg", "replicas-compose.cfg"]
    for c in cfgs:
        assert (ROOT / "deploy" / "haproxy" / Path(c).name).is_file()
    # the proxy's limits are the service's own settings, from the same variables
    for name in ("BRUSHPRINT_RATE_LIMIT_PER_MINUTE", "BRUSHPRINT_MAX_REQUEST_BYTES"):
        assert proxy["environment"][name] == app["environment"][name]
    assert proxy["environment"]["BRUSHPRINT_PROXY_DIR"] == "/usr/local/etc/haproxy"
    servers = (ROOT / "deploy" / "haproxy" / "replicas-compose.cfg").read_text()
    assert "server-template" in servers and "brushprint:8000" in servers and "resolvers docker" in servers
