"""The client folder on its own: everything it loads is in it, and its default image is the server's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from framepack_live.engine.images import default_start_image

CLIENT = Path(__file__).resolve().parents[2] / "client"


def test_every_reference_is_a_local_file():
    """No CDN, no build step: each src/href and module import names a file in client/."""
    html = (CLIENT / "index.html").read_text()
    references = [(CLIENT, ref) for ref in re.findall(r'(?:src|href)="([^"#]+)"', html)]
    for script in (CLIENT / "js").glob("*.js"):
        imports = re.findall(r'^import .* from "([^"]+)";$', script.read_text(), flags=re.M)
        assert imports or script.name != "main.js"
        references += [(script.parent, ref) for ref in imports]
    assert references
    for base, ref in references:
        assert not re.match(r"^[a-z]+:|^//", ref), f"external reference {ref}"
        assert (base / ref).is_file(), f"{ref} is missing"


def test_default_image_is_the_servers():
    """The preview shown when no image is chosen is what the server starts from."""
    shipped = np.asarray(Image.open(CLIENT / "assets" / "default-start.png").convert("RGB"))
    height, width, _ = shipped.shape
    assert np.array_equal(shipped, np.asarray(default_start_image(width, height)))
