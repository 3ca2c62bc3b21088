"""The favicon: an SVG at /favicon.ico, where browsers ask, and among the dashboard's files."""

import dataclasses
import xml.etree.ElementTree as ElementTree

from client.dashboard import STATIC_DIR
from tests.client.client_token import TOKEN
from tests.client.fake_nodes import start_client


async def test_the_favicon_is_an_svg_at_both_addresses_without_a_token(cluster, aiohttp_client):
    client_config = dataclasses.replace(cluster.config.clients[0], token=TOKEN)
    cluster.config = dataclasses.replace(cluster.config, clients=(client_config,))
    client = await start_client(aiohttp_client, cluster)
    expected = (STATIC_DIR / "favicon.svg").read_bytes()
    for path in ("/favicon.ico", "/dashboard/static/favicon.svg"):
        response = await client.get(path)
        assert response.status == 200, path
        assert response.content_type == "image/svg+xml"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert await response.read() == expected


def test_the_favicon_is_a_plain_svg_image():
    tree = ElementTree.fromstring((STATIC_DIR / "favicon.svg").read_bytes())
    assert tree.tag == "{http://www.w3.org/2000/svg}svg"
    tags = {element.tag.rpartition("}")[2] for element in tree.iter()}
    assert tags <= {"svg", "rect", "circle", "path"}  # no script, no link, no foreign object
